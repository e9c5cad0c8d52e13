"""What a node serves and whether its Deployment is the rendered one, from recorded objects."""

from __future__ import annotations

import copy

import pytest
from recorded import RecordedApi, listing, load, served

from edgecast.deploy.manifests import PredictorSpec, names_for, render
from edgecast.deploy.nodestate import (
    NodeState,
    deployment_progress,
    first_difference,
    is_ready_pod,
    progress_deadline_exceeded,
    read_node_state,
    serving_models_of,
    spec_difference,
)


def deployment_of(model_id: str, node: str = "edge-1", image: str = "edgecast-predictor:test"):
    return served(render(PredictorSpec(node=node, model_id=model_id, image=image))["deployment"])


def node_serving(model_id: str, *deployed: str) -> NodeState:
    service = load(f"service-selecting-{model_id}.yaml")
    deployments = [deployment_of(m) for m in deployed]
    return NodeState(service, {d["metadata"]["name"]: d for d in deployments})


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
    assert NodeState(service, {}).selected_model_id() == "model-a"


def test_a_node_without_service_selects_nothing():
    state = NodeState(None, {})
    assert (state.selector, state.selected_label, state.selected_model_id()) == ({}, None, None)
    assert state.annotation("edgecast.io/model-id") is None


def test_the_node_state_is_read_with_the_nodes_labels(api: RecordedApi):
    deployment = deployment_of("model-a")
    api.answer("read_namespaced_service", load("service-selecting-model-a.yaml"))
    api.answer("list_namespaced_deployment", listing(deployment))

    state = read_node_state(api.kube(), names_for("edge-1", "model-b"))

    assert state.selected_label == "model-a"
    assert list(state.deployments) == [deployment["metadata"]["name"]]
    ((_, kwargs),) = api.called("list_namespaced_deployment")
    assert kwargs["label_selector"] == (
        "app.kubernetes.io/name=edgecast-predictor,edgecast.io/node=edge-1"
    )


def test_serving_models_by_node():
    other = copy.deepcopy(load("service-selecting-model-a.yaml"))
    other["metadata"]["name"] = "predictor-edge-2"
    other["metadata"]["labels"]["edgecast.io/node"] = "edge-2"
    other["metadata"]["annotations"]["edgecast.io/node"] = "edge-2"
    other["spec"]["selector"]["edgecast.io/node"] = "edge-2"
    stray = copy.deepcopy(other)
    del stray["metadata"]["labels"]["edgecast.io/node"]
    del stray["metadata"]["annotations"]["edgecast.io/node"]
    services = [load("service-selecting-model-b.yaml"), other, stray]
    deployments = [deployment_of("model-b"), deployment_of("model-a", node="edge-2")]

    found = serving_models_of(services, deployments)

    assert set(found) == {"edge-1", "edge-2"}, "a Service without a node is not a node's"
    assert (found["edge-1"].model_id, found["edge-1"].previous_model_id) == ("model-b", "model-a")
    assert found["edge-1"].deployment == names_for("edge-1", "model-b").deployment
    assert (found["edge-2"].model_id, found["edge-2"].previous_model_id) == ("model-a", None)
    assert found["edge-2"].service == "predictor-edge-2"
    assert found["edge-2"].deployment == names_for("edge-2", "model-a").deployment


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
