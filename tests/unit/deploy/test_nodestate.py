"""What a node serves and whether its Deployment is the rendered one, from recorded objects."""

from __future__ import annotations

import json

import pytest
from recorded import RecordedApi, listing, load, served

from edgecast.deploy.manifests import PredictorSpec, names_for, render
from edgecast.deploy.nodestate import (
    NodeState,
    deployment_progress,
    first_difference,
    is_ready_pod,
    predictor_info,
    progress_deadline_exceeded,
    read_node_state,
    spec_difference,
)

A = names_for("edge-1", "model-a")
B = names_for("edge-1", "model-b")


def deployment_of(model_id: str, node: str = "edge-1", image: str = "edgecast-predictor:test"):
    return served(render(PredictorSpec(node=node, model_id=model_id, image=image))["deployment"])


def state_of(service: dict | None, *deployments: dict) -> NodeState:
    return NodeState("edge-1", "edgecast", service, {d["metadata"]["name"]: d for d in deployments})


def node_serving(model_id: str, *deployed: str) -> NodeState:
    service = load(f"service-selecting-{model_id}.yaml")
    return state_of(service, *(deployment_of(m) for m in deployed))


def test_the_selected_model_comes_from_its_deployment():
    state = node_serving("model-b", "model-a", "model-b")

    assert state.selected_label == "model-b"
    assert state.selected_model_id() == "model-b"
    assert (
        state.selected_deployment()["metadata"]["name"] == names_for("edge-1", "model-b").deployment
    )
    assert state.annotation("edgecast.io/previous-model-id") == "model-a"


def test_without_its_deployment_the_service_annotation_names_the_model():
    state = node_serving("model-a")
    assert state.selected_deployment() is None
    assert state.selected_model_id() == "model-a"


def test_a_label_without_a_matching_annotation_is_the_model():
    service = load("service-selecting-model-a.yaml")
    service["metadata"]["annotations"]["edgecast.io/model-id"] = "model-z"
    assert state_of(service).selected_model_id() == "model-a"


def test_a_node_without_service_selects_nothing():
    state = state_of(None)
    assert (state.selector, state.selected_label, state.selected_model_id()) == ({}, None, None)
    assert state.annotation("edgecast.io/model-id") is None


def test_the_node_state_is_read_with_the_nodes_labels(api: RecordedApi):
    deployment = deployment_of("model-a")
    api.answer("read_namespaced_service", load("service-selecting-model-a.yaml"))
    api.answer("list_namespaced_deployment", listing(deployment))

    state = read_node_state(api.kube(), "edge-1")

    assert (state.node, state.namespace) == ("edge-1", "edgecast")
    assert state.selected_label == "model-a"
    assert list(state.deployments) == [deployment["metadata"]["name"]]
    ((args, _),) = api.called("read_namespaced_service")
    assert args == ("predictor-edge-1",)
    ((_, kwargs),) = api.called("list_namespaced_deployment")
    assert kwargs["label_selector"] == (
        "app.kubernetes.io/name=edgecast-predictor,edgecast.io/node=edge-1"
    )


def test_a_switched_node_serves_its_services_model_with_the_recorded_spec():
    deployed = load("deployment-model-b-deployed.yaml")
    state = state_of(load("service-selecting-model-b.yaml"), deployed, deployment_of("model-a"))

    info = predictor_info(state)

    assert (info.model_id, info.previous_model_id) == ("model-b", "model-a")
    assert (info.service, info.deployment, info.available) == (
        "predictor-edge-1",
        B.deployment,
        True,
    )
    assert info.spec == PredictorSpec(
        node="edge-1", model_id="model-b", image="edgecast-predictor:test"
    )
    assert info.spec_problem is None
    assert info.models_in_use == ("model-a", "model-b")
    assert info.summary == (
        "node edge-1 in namespace edgecast: Service predictor-edge-1 selects model model-b "
        f"(Deployment {B.deployment}, available); before it model-a"
    )


def test_the_recorded_spec_renders_the_deployment_it_came_from():
    deployed = load("deployment-model-b-deployed.yaml")

    spec = predictor_info(state_of(load("service-selecting-model-b.yaml"), deployed)).spec

    assert spec is not None
    assert spec_difference(deployed, render(spec)["deployment"]) is None


def test_a_node_without_service_serves_nothing_but_its_leftovers_stay_in_use():
    info = predictor_info(state_of(None, deployment_of("model-a")))

    assert (info.model_id, info.previous_model_id, info.deployment) == (None, None, None)
    assert (info.available, info.spec) == (False, None)
    assert info.service == "predictor-edge-1"
    assert info.models_in_use == ("model-a",)
    assert (
        info.summary
        == "node edge-1 in namespace edgecast has no predictor Service predictor-edge-1"
    )


def test_a_service_whose_deployment_is_gone_serves_its_annotated_model():
    info = predictor_info(state_of(load("service-selecting-model-b.yaml")))

    assert (info.model_id, info.deployment, info.spec, info.available) == (
        "model-b",
        None,
        None,
        False,
    )
    assert info.summary.endswith(
        "selects model model-b, which has no Deployment; before it model-a"
    )


def test_a_starting_deployment_is_not_available():
    starting = load("deployment-model-b-starting.yaml")

    info = predictor_info(state_of(load("service-selecting-model-b.yaml"), starting))

    assert (info.deployment, info.available) == (B.deployment, False)
    assert "(Deployment predictor-edge-1-af30308345, not available)" in info.summary


@pytest.mark.parametrize(
    ("annotation", "problem"),
    [
        (None, "has no edgecast.io/spec annotation"),
        ("{not json", "edgecast.io/spec is not JSON ("),
        ("[]", "edgecast.io/spec is not a JSON object"),
        ('{"image": "x", "node": "edge-1", "gpu": 1}', "does not hold PredictorSpec fields ("),
        ('{"image": "x", "node": "edge-1", "runtime": "onnx"}', "runtime must be litert or keras"),
    ],
)
def test_a_deployment_without_a_usable_spec_says_why(annotation, problem):
    deployed = load("deployment-model-b-deployed.yaml")
    del deployed["metadata"]["annotations"]["edgecast.io/spec"]
    if annotation is not None:
        deployed["metadata"]["annotations"]["edgecast.io/spec"] = annotation

    info = predictor_info(state_of(load("service-selecting-model-b.yaml"), deployed))

    assert (info.model_id, info.deployment, info.spec) == ("model-b", B.deployment, None)
    assert info.spec_problem.startswith(f"Deployment {B.deployment}")
    assert problem in info.spec_problem


def test_the_state_travels_as_plain_data_without_managed_fields():
    deployed = load("deployment-model-b-deployed.yaml")
    state = state_of(load("service-selecting-model-b.yaml"), deployed)

    record = json.loads(json.dumps(state.record()))
    again = NodeState.from_record(record)

    assert "managedFields" not in json.dumps(record)
    assert "managedFields" in json.dumps(deployed)
    assert (again.node, again.namespace, list(again.deployments)) == (
        "edge-1",
        "edgecast",
        [B.deployment],
    )
    assert predictor_info(again) == predictor_info(state)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"node": ""}, "names its node and namespace"),
        ({"service": "predictor-edge-1"}, "service is an API object or null"),
        ({"deployments": [{"metadata": {}}]}, "list of named API objects"),
    ],
)
def test_a_malformed_state_record_is_refused(change, message):
    record = {**state_of(None, deployment_of("model-a")).record(), **change}
    with pytest.raises(ValueError, match=message):
        NodeState.from_record(record)


def test_a_state_belongs_to_its_node_and_namespace():
    state = state_of(None)
    state.check_of("edge-1", "edgecast")
    with pytest.raises(ValueError, match="read for node edge-1 in namespace edgecast, not for"):
        state.check_of("edge-2", "edgecast")
    with pytest.raises(ValueError, match="not for node edge-1 in namespace other"):
        state.check_of("edge-1", "other")


@pytest.mark.parametrize(
    ("fixture", "done", "text"),
    [
        (
            "deployment-model-b-available.yaml",
            True,
            "observedGeneration=1, generation=1, replicas=1, updatedReplicas=1, readyReplicas=1, "
            "availableReplicas=1, Available=True (MinimumReplicasAvailable: Deployment has "
            "minimum availability.), Progressing=True (NewReplicaSetAvailable: ReplicaSet "
            '"predictor-edge-1-af30308345-5c8d9f7b6c" has successfully progressed.)',
        ),
        (
            "deployment-model-b-starting.yaml",
            False,
            "observedGeneration=1, generation=1, replicas=1, updatedReplicas=1, readyReplicas=0, "
            "availableReplicas=0, Available=False (MinimumReplicasUnavailable: Deployment does "
            "not have minimum availability.), Progressing=True (ReplicaSetUpdated: ReplicaSet "
            '"predictor-edge-1-af30308345-5c8d9f7b6c" is progressing.)',
        ),
    ],
)
def test_deployment_progress_reads_the_controllers_status(fixture, done, text):
    assert deployment_progress(load(fixture)) == (done, text)


def test_progress_waits_for_the_current_generation_and_a_live_deployment():
    deployment = load("deployment-model-b-available.yaml")
    deployment["metadata"]["generation"] = 2
    assert deployment_progress(deployment)[0] is False
    deployment = load("deployment-model-b-available.yaml")
    deployment["metadata"]["deletionTimestamp"] = "2026-03-02T10:20:00Z"
    assert deployment_progress(deployment)[0] is False
    fresh = {"metadata": {"generation": 1}, "spec": {"replicas": 1}}
    assert deployment_progress(fresh)[1].endswith(
        "Available condition absent, Progressing condition absent"
    )


def test_a_passed_progress_deadline_is_found():
    condition = progress_deadline_exceeded(load("deployment-model-b-deadline-exceeded.yaml"))
    assert condition is not None
    assert condition["reason"] == "ProgressDeadlineExceeded"
    assert progress_deadline_exceeded(load("deployment-model-b-starting.yaml")) is None


def test_server_defaults_do_not_make_a_deployment_differ():
    rendered = render(
        PredictorSpec(node="edge-1", model_id="model-a", image="edgecast-predictor:test")
    )
    assert spec_difference(served(rendered["deployment"]), rendered["deployment"]) is None


def test_a_changed_image_is_the_difference():
    live = deployment_of("model-a", image="edgecast-predictor:old")
    rendered = render(
        PredictorSpec(node="edge-1", model_id="model-a", image="edgecast-predictor:test")
    )

    found = spec_difference(live, rendered["deployment"])

    assert found is not None
    assert found.startswith("metadata.annotations.edgecast.io/spec: ")


@pytest.mark.parametrize(
    ("have", "want", "found"),
    [
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, None),
        ({"a": {}}, {"a": {"b": 1}}, "a.b: missing"),
        ({"a": [1, 2]}, {"a": [1]}, "a: [1, 2] != [1]"),
        ({"a": [{"x": 1, "y": 0}]}, {"a": [{"x": 2}]}, "a[0].x: 1 != 2"),
        ({"a": "text"}, {"a": {"b": 1}}, "a: 'text' is not a mapping"),
    ],
)
def test_first_difference(have, want, found):
    assert first_difference(have, want) == found


def test_ready_pods():
    assert is_ready_pod(load("pod-ready.yaml"))
    assert not any(is_ready_pod(pod) for pod in load("pods-not-ready.yaml")["items"])
    terminating = load("pod-ready.yaml")
    terminating["metadata"]["deletionTimestamp"] = "2026-03-02T10:20:00Z"
    assert not is_ready_pod(terminating)
