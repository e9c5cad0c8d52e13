"""The new model's Deployment and the old ones: create, wait, ask the pods, delete; against
recorded Deployments and pods."""

from __future__ import annotations

import pytest
from recorded import RecordedApi, Watch, api_error, listing, load, served

from edgecast.deploy.deployments import (
    create_deployment,
    delete_deployment,
    not_available,
    pods_of_other_models,
    remove_deployments,
    update_deployment,
    verify_pods,
    wait_deployment_available,
    wait_serving_available,
)
from edgecast.deploy.kube import CheckFailed, WatchTimeout
from edgecast.deploy.manifests import PredictorSpec, names_for, render
from edgecast.deploy.nodestate import NodeState

NAMES = names_for("edge-1", "model-b")
OLD = names_for("edge-1", "model-a").deployment
READY_POD = "predictor-edge-1-af30308345-5c8d9f7b6c-x7k2p"


def rendered() -> dict:
    spec = PredictorSpec(node="edge-1", model_id="model-b", image="edgecast-predictor:test")
    return render(spec)["deployment"]


def test_an_existing_deployment_is_returned_instead_of_created(api: RecordedApi):
    live = served(rendered())
    api.answer("create_namespaced_deployment", api_error(409, "already exists"))
    api.answer("read_namespaced_deployment", live)

    assert create_deployment(api.kube(), rendered()) == live
    assert api.called("read_namespaced_deployment")[0][0] == (NAMES.deployment,)

    api.answers.clear()
    api.answer("create_namespaced_deployment", {})
    assert create_deployment(api.kube(), rendered()) is None


def test_an_update_patches_the_rendered_fields_only(api: RecordedApi):
    api.answer("patch_namespaced_deployment", {})

    update_deployment(api.kube(), rendered())

    ((args, kwargs),) = api.called("patch_namespaced_deployment")
    assert args == (NAMES.deployment,)
    assert set(kwargs["body"]) == {"metadata", "spec"}
    assert set(kwargs["body"]["metadata"]) == {"labels", "annotations"}
    assert kwargs["_content_type"] == "application/merge-patch+json"


def test_not_available_names_the_wait_and_the_last_status():
    text = not_available("edgecast", NAMES.deployment, load("deployment-model-b-starting.yaml"), 1)
    assert text == (
        "Deployment edgecast/predictor-edge-1-af30308345 was not available within 1s (waited for "
        "status.observedGeneration >= metadata.generation, replicas, updatedReplicas, "
        "readyReplicas and availableReplicas == 1 and condition Available=True); last status: "
        "observedGeneration=1, generation=1, replicas=1, updatedReplicas=1, readyReplicas=0, "
        "availableReplicas=0, Available=False (MinimumReplicasUnavailable: Deployment does not "
        "have minimum availability.), Progressing=True (ReplicaSetUpdated: ReplicaSet "
        '"predictor-edge-1-af30308345-5c8d9f7b6c" is progressing.)'
    )
    assert not_available("edgecast", "gone", None, 2.5).endswith("last status: not found")


def test_a_passed_progress_deadline_stops_the_wait_with_the_pods_reason(api: RecordedApi):
    api.answer(
        "list_namespaced_deployment", listing(load("deployment-model-b-deadline-exceeded.yaml"))
    )
    api.answer("list_namespaced_pod", listing(load("pods-not-ready.yaml")["items"][2]))
    api.answer("list_namespaced_event", listing())

    with pytest.raises(CheckFailed) as failure:
        wait_deployment_available(api.kube(), NAMES.deployment, NAMES.selector, 8080, timeout=60)

    message = str(failure.value)
    assert message.startswith(
        "Deployment edgecast/predictor-edge-1-af30308345 exceeded its progress deadline "
        '(ProgressDeadlineExceeded: ReplicaSet "predictor-edge-1-af30308345-5c8d9f7b6c" has '
        "timed out progressing.); pod predictor-edge-1-af30308345-5c8d9f7b6c-n3v8r: phase Pending"
    )
    assert "ErrImageNeverPull" in message


def test_a_deployment_deleted_while_starting_stops_the_wait(api: RecordedApi):
    api.answer("list_namespaced_deployment", listing())

    with pytest.raises(CheckFailed, match="was deleted while starting"):
        wait_deployment_available(api.kube(), NAMES.deployment, NAMES.selector, 8080, timeout=60)


def test_the_availability_timeout_explains_the_pods(api: RecordedApi):
    api.answer("list_namespaced_deployment", listing(load("deployment-model-b-starting.yaml")))
    api.answer("list_namespaced_pod", listing(load("pods-not-ready.yaml")["items"][0]))
    api.answer("connect_get_namespaced_pod_proxy_with_path", api_error(503, body="{}"))
    api.answer("list_namespaced_event", listing())

    with pytest.raises(WatchTimeout) as timeout:
        wait_deployment_available(api.kube(), NAMES.deployment, NAMES.selector, 8080, timeout=0)

    assert "was not available within 0s" in str(timeout.value)
    assert str(timeout.value).endswith(
        "; pod predictor-edge-1-af30308345-5c8d9f7b6c-x7k2p: phase Running, container predictor "
        "running but not ready (readiness probe failing), predictor /readyz not reachable "
        "(503 Service Unavailable), Ready=False (ContainersNotReady: containers with unready "
        "status: [predictor]), ContainersReady=False (ContainersNotReady: containers with "
        "unready status: [predictor])"
    )


def test_each_ready_pod_is_asked_which_model_it_serves(api: RecordedApi):
    not_ready = load("pods-not-ready.yaml")["items"][1]
    api.answer("list_namespaced_pod", listing(load("pod-ready.yaml"), not_ready))
    api.answer("connect_get_namespaced_pod_proxy_with_path", {"model_id": "model-b"})

    found = verify_pods(api.kube(), NAMES.deployment, NAMES.selector, 8080, "model-b")

    assert found == {READY_POD: "10.42.0.23"}
    ((args, kwargs),) = api.called("connect_get_namespaced_pod_proxy_with_path")
    assert args == (f"{READY_POD}:8080",)
    assert kwargs["path"] == "v1/model"


@pytest.mark.parametrize(
    ("pods", "answer", "reason"),
    [
        (
            [],
            None,
            "Deployment edgecast/predictor-edge-1-af30308345 reports available but no pod of its "
            "selector is Ready",
        ),
        (
            ["pod-ready.yaml"],
            {"model_id": "model-x"},
            f"pod edgecast/{READY_POD} answers GET /v1/model with model_id 'model-x', expected "
            "'model-b'",
        ),
        (
            ["pod-ready.yaml"],
            api_error(503, body="error trying to reach service: dial tcp 10.42.0.23:8080"),
            f"pod edgecast/{READY_POD} did not answer GET /v1/model through the API server's pod "
            "proxy: 503 Service Unavailable: error trying to reach service: dial tcp "
            "10.42.0.23:8080",
        ),
    ],
)
def test_a_pod_check_that_fails_says_why(api: RecordedApi, pods, answer, reason):
    api.answer("list_namespaced_pod", listing(*(load(name) for name in pods)))
    api.answer("connect_get_namespaced_pod_proxy_with_path", answer)

    with pytest.raises(CheckFailed) as failure:
        verify_pods(api.kube(), NAMES.deployment, NAMES.selector, 8080, "model-b")

    assert str(failure.value) == reason


def test_deleting_the_new_deployment_reports_what_happened(api: RecordedApi):
    api.answer("delete_namespaced_deployment", api_error(404, "not found"))
    assert delete_deployment(api.kube(), NAMES.deployment) == (
        "Deployment predictor-edge-1-af30308345 deleted"
    )
    api.answers.clear()
    api.answer("delete_namespaced_deployment", api_error(403, "cannot delete"))
    assert delete_deployment(api.kube(), NAMES.deployment) == (
        "Deployment predictor-edge-1-af30308345 could NOT be deleted (403 Forbidden: cannot delete)"
    )


def old_pod() -> dict:
    pod = load("pod-ready.yaml")
    pod["metadata"]["name"] = "predictor-edge-1-73f95cf180-6d9c7b8f5d-h4j6k"
    pod["metadata"]["labels"]["edgecast.io/model"] = "model-a"
    return pod


@pytest.mark.parametrize(
    ("wait_gone", "propagation"), [(False, "Background"), (True, "Foreground")]
)
def test_old_deployments_are_deleted_and_their_pods_awaited(
    api: RecordedApi, wait_gone: bool, propagation: str
):
    api.answer("delete_namespaced_deployment", {}, api_error(404, "gone"), api_error(403, "no"))
    api.answer("list_namespaced_pod", listing(load("pod-ready.yaml")))

    removed, warnings = remove_deployments(
        api.kube(),
        [OLD, "already-gone", "forbidden"],
        node="edge-1",
        model_id="model-b",
        timeout=5,
        wait_gone=wait_gone,
    )

    assert removed == (OLD, "already-gone")
    assert warnings == ("Deployment forbidden was not deleted: 403 Forbidden: no",)
    assert {kw["propagation_policy"] for _, kw in api.called("delete_namespaced_deployment")} == {
        propagation
    }
    ((_, kwargs),) = api.called("list_namespaced_pod")
    assert kwargs["label_selector"] == (
        "app.kubernetes.io/name=edgecast-predictor,edgecast.io/node=edge-1"
    )


def terminating(pod: dict) -> dict:
    pod["metadata"]["deletionTimestamp"] = "2026-12-03T03:00:00Z"
    return pod


def test_a_terminating_old_pod_ends_the_cleanup_unless_it_must_be_gone(api: RecordedApi):
    api.answer("delete_namespaced_deployment", {}, {})
    api.answer("list_namespaced_pod", listing(load("pod-ready.yaml"), terminating(old_pod())))

    assert remove_deployments(api.kube(), [OLD], node="edge-1", model_id="model-b", timeout=0) == (
        (OLD,),
        (),
    )
    removed, warnings = remove_deployments(
        api.kube(), [OLD], node="edge-1", model_id="model-b", timeout=0, wait_gone=True
    )
    assert removed == (OLD,)
    assert warnings == (
        "old predictor pods predictor-edge-1-73f95cf180-6d9c7b8f5d-h4j6k were still present 0s "
        "after their Deployments were deleted (waited for no pod of node edge-1 but model "
        "model-b's)",
    )


def test_old_pods_outliving_the_cleanup_timeout_are_a_warning(api: RecordedApi):
    api.answer("delete_namespaced_deployment", {})
    api.answer("list_namespaced_pod", listing(load("pod-ready.yaml"), old_pod()))

    removed, warnings = remove_deployments(
        api.kube(), [OLD], node="edge-1", model_id="model-b", timeout=0
    )

    assert removed == (OLD,)
    assert warnings == (
        "old predictor pods predictor-edge-1-73f95cf180-6d9c7b8f5d-h4j6k were still not "
        "terminating 0s after their Deployments were deleted (waited for no pod of node edge-1 "
        "but model model-b's to be left running)",
    )


def test_nothing_removed_means_nothing_awaited(api: RecordedApi):
    assert remove_deployments(api.kube(), [], node="edge-1", model_id="model-b", timeout=5) == (
        (),
        (),
    )
    assert api.calls == []


def test_pods_of_other_models():
    pods = {p["metadata"]["name"]: p for p in (load("pod-ready.yaml"), old_pod())}
    assert pods_of_other_models(pods, "model-b") == ["predictor-edge-1-73f95cf180-6d9c7b8f5d-h4j6k"]


def test_the_deployment_the_service_selects_is_awaited_by_a_watch(api: RecordedApi):
    starting = load("deployment-model-b-starting.yaml")
    api.answer(
        "list_namespaced_deployment",
        listing(starting, resource_version="4770"),
        Watch(load("watch-deployment-becomes-available.yaml")),
    )
    state = NodeState(
        "edge-1",
        "edgecast",
        load("service-selecting-model-b.yaml"),
        {NAMES.deployment: load("deployment-model-b-deployed.yaml")},
    )

    wait_serving_available(api.kube(), state, timeout=60)

    (_, listed), (_, watched) = api.called("list_namespaced_deployment")
    assert (
        listed["field_selector"]
        == watched["field_selector"]
        == (f"metadata.name={NAMES.deployment}")
    )
    assert watched["resource_version"] == "4770"


def test_a_node_without_the_selected_deployment_has_nothing_to_wait_for(api: RecordedApi):
    state = NodeState("edge-1", "edgecast", load("service-selecting-model-b.yaml"), {})

    with pytest.raises(CheckFailed, match="no Deployment to wait for: node edge-1 in namespace"):
        wait_serving_available(api.kube(), state, timeout=60)

    assert api.calls == []
