"""Applying a plan: the phases in order, and the rollback each failure gets, against an API that
answers with recorded objects."""

from __future__ import annotations

import pytest
from recorded import RecordedApi, api_error, listing, load, served

from edgecast.deploy.manifests import PredictorSpec, names_for, render
from edgecast.deploy.nodestate import NodeState
from edgecast.deploy.plan import plan_from_state
from edgecast.deploy.podswitch import PHASES, PodSwitchError, Timeouts, apply, pod_switch

A = names_for("edge-1", "model-a")
B = names_for("edge-1", "model-b")
FAST = Timeouts(ready=5, endpoints=5, verify=5, cleanup=5, request=5)


def spec(model_id: str, image: str = "edgecast-predictor:test") -> PredictorSpec:
    return PredictorSpec(node="edge-1", model_id=model_id, image=image)


def deployment(model_id: str, image: str = "edgecast-predictor:test") -> dict:
    return served(render(spec(model_id, image))["deployment"])


def state_of(serving: str, *deployments: dict) -> NodeState:
    service = load(f"service-selecting-{serving}.yaml")
    return NodeState("edge-1", "edgecast", service, {d["metadata"]["name"]: d for d in deployments})


def switch_from_a_to_b():
    return plan_from_state(spec("model-b"), state_of("model-a", deployment("model-a")))


def new_deployment_starts(api: RecordedApi) -> None:
    api.answer("create_namespaced_deployment", {})
    api.answer("list_namespaced_deployment", listing(deployment("model-b")))
    api.answer("list_namespaced_pod", listing(load("pod-ready.yaml")))
    api.answer("connect_get_namespaced_pod_proxy_with_path", {"model_id": "model-b"})


def test_the_phases_run_in_order_and_the_old_deployment_goes(api: RecordedApi):
    new_deployment_starts(api)
    api.answer("read_namespaced_service", load("service-selecting-model-a.yaml"))
    api.answer("patch_namespaced_service", {})
    api.answer("list_namespaced_endpoint_slice", listing(load("endpointslice-new-pod.yaml")))
    api.answer("connect_get_namespaced_service_proxy_with_path", {"model_id": "model-b"})
    api.answer("delete_namespaced_deployment", {})

    result = apply(api.kube().apis, switch_from_a_to_b(), timeouts=FAST, drain_seconds=0)

    assert (result.changed, result.model_id, result.previous_model_id) == (
        True,
        "model-b",
        "model-a",
    )
    assert result.removed_deployments == (A.deployment,)
    assert result.warnings == ()
    assert set(result.phases) == {*PHASES, "total"}
    assert [name for name, _, _ in api.calls] == [
        "create_namespaced_deployment",
        "list_namespaced_deployment",
        "list_namespaced_pod",
        "connect_get_namespaced_pod_proxy_with_path",
        "read_namespaced_service",
        "patch_namespaced_service",
        "list_namespaced_endpoint_slice",
        *["connect_get_namespaced_service_proxy_with_path"] * 3,
        "delete_namespaced_deployment",
        "list_namespaced_pod",
    ]
    # The old Deployment goes at once; its pod finishes its graceful exit on its own.
    ((args, kwargs),) = api.called("delete_namespaced_deployment")
    assert (args, kwargs["propagation_policy"]) == ((A.deployment,), "Background")


def test_a_plan_without_changes_makes_no_call(api: RecordedApi):
    state = state_of("model-b", deployment("model-b"))

    result = apply(api.kube().apis, plan_from_state(spec("model-b"), state), timeouts=FAST)

    assert not result.changed
    assert result.msg == "Service predictor-edge-1 already selects model model-b"
    assert set(result.phases) == {"total"}
    assert api.calls == []


def test_a_refused_plan_fails_in_create_and_leaves_the_node_alone(api: RecordedApi):
    stale = deployment("model-b", image="edgecast-predictor:old")
    state = state_of("model-b", stale)

    with pytest.raises(PodSwitchError) as failure:
        apply(api.kube().apis, plan_from_state(spec("model-b"), state), timeouts=FAST)

    assert failure.value.phase == "create"
    assert not failure.value.reverted
    assert str(failure.value).startswith(
        "switching node edge-1 to model model-b failed in phase create: Deployment "
        f"edgecast/{B.deployment} serves model model-b but differs from the spec"
    )
    assert "Rolled back" not in str(failure.value)
    assert api.calls == []


def test_a_failure_before_the_switch_deletes_the_new_deployment(api: RecordedApi):
    api.answer("create_namespaced_deployment", api_error(500, "etcdserver: request timed out"))
    api.answer("delete_namespaced_deployment", api_error(404, "not found"))

    with pytest.raises(PodSwitchError) as failure:
        apply(api.kube().apis, switch_from_a_to_b(), timeouts=FAST)

    assert str(failure.value) == (
        "switching node edge-1 to model model-b failed in phase create: 500 Internal Server "
        f"Error: etcdserver: request timed out. Rolled back: Deployment {B.deployment} deleted; "
        "Service predictor-edge-1 unchanged, still selecting model model-a"
    )
    assert (failure.value.phase, failure.value.reverted) == ("create", True)
    assert set(failure.value.phases) == {"create", "total"}
    ((_, kwargs),) = api.called("delete_namespaced_deployment")
    assert kwargs["propagation_policy"] == "Background"


def test_a_failure_after_the_switch_puts_the_selector_back_first(api: RecordedApi):
    new_deployment_starts(api)
    api.answer(
        "read_namespaced_service",
        load("service-selecting-model-a.yaml"),
        load("service-selecting-model-b.yaml"),
    )
    api.answer("patch_namespaced_service", {})
    api.answer("list_namespaced_endpoint_slice", listing(load("endpointslice-old-pod.yaml")))
    api.answer("delete_namespaced_deployment", {})
    limits = Timeouts(ready=5, endpoints=0, verify=5, request=5)

    with pytest.raises(PodSwitchError) as failure:
        apply(api.kube().apis, switch_from_a_to_b(), timeouts=limits)

    assert failure.value.phase == "endpoints"
    assert failure.value.reverted
    assert str(failure.value).endswith(
        "Rolled back: Service predictor-edge-1 selects model model-a again; Deployment "
        f"{B.deployment} deleted"
    )
    switch, revert = api.called("patch_namespaced_service")
    assert switch[1]["body"]["spec"]["selector"]["edgecast.io/model"] == "model-b"
    assert revert[1]["body"]["spec"]["selector"]["edgecast.io/model"] == "model-a"
    assert revert[1]["body"]["metadata"]["resourceVersion"] == "4890"


def test_an_unreadable_node_fails_before_any_change(api: RecordedApi):
    api.answer("read_namespaced_service", api_error(403, "services is forbidden"))

    with pytest.raises(PodSwitchError) as failure:
        pod_switch(api.kube().apis, spec("model-b"), timeouts=FAST)

    assert str(failure.value) == (
        "reading the Service and Deployments of node edge-1 in namespace edgecast failed: "
        "403 Forbidden: services is forbidden"
    )
    assert failure.value.phase == "read"
    assert [name for name, _, _ in api.calls] == ["read_namespaced_service"]


def test_a_switch_given_the_state_read_before_does_not_read_it_again(api: RecordedApi):
    api.answer("create_namespaced_deployment", api_error(500, "etcdserver: request timed out"))
    api.answer("delete_namespaced_deployment", {})

    with pytest.raises(PodSwitchError, match="failed in phase create"):
        pod_switch(
            api.kube().apis,
            spec("model-b"),
            state=state_of("model-a", deployment("model-a")),
            timeouts=FAST,
        )

    assert [name for name, _, _ in api.calls] == [
        "create_namespaced_deployment",
        "delete_namespaced_deployment",
    ]


def test_in_place_updates_the_serving_deployment_and_service_without_reverting(api: RecordedApi):
    wanted = PredictorSpec(
        node="edge-1", model_id="model-b", image="edgecast-predictor:test", service_port=9090
    )
    stale = deployment("model-b", image="edgecast-predictor:old")
    api.answer("patch_namespaced_deployment", {})
    api.answer("list_namespaced_deployment", listing(deployment("model-b")))
    api.answer("list_namespaced_pod", listing(load("pod-ready.yaml")))
    api.answer("connect_get_namespaced_pod_proxy_with_path", {"model_id": "model-b"})
    api.answer("read_namespaced_service", load("service-selecting-model-b.yaml"))
    api.answer("patch_namespaced_service", {})
    api.answer("list_namespaced_endpoint_slice", listing(load("endpointslice-new-pod.yaml")))
    api.answer("connect_get_namespaced_service_proxy_with_path", {"model_id": "model-b"})

    result = apply(
        api.kube().apis,
        plan_from_state(wanted, state_of("model-b", stale), in_place=True),
        timeouts=FAST,
    )

    assert result.changed
    assert result.removed_deployments == ()
    ((_, patched),) = api.called("patch_namespaced_service")
    assert patched["body"]["spec"]["ports"][0]["port"] == 9090
    assert patched["body"]["spec"]["selector"] == B.selector
    assert patched["body"]["metadata"]["resourceVersion"] == "4890"
    assert patched["body"]["metadata"]["annotations"]["edgecast.io/previous-model-id"] == "model-a"
    assert api.called("delete_namespaced_deployment") == []
