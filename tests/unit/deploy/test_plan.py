"""Every decision of a switch, as plain data, from recorded node states."""

from __future__ import annotations

import pytest
from recorded import load, overlay, served

from edgecast.deploy.manifests import PredictorSpec, names_for, render
from edgecast.deploy.nodestate import NodeState
from edgecast.deploy.plan import SwitchPlan, deployment_step, plan_from_state
from edgecast.deploy.service import ServiceSelection

A = names_for("edge-1", "model-a")
B = names_for("edge-1", "model-b")


def spec(model_id: str, image: str = "edgecast-predictor:test") -> PredictorSpec:
    return PredictorSpec(node="edge-1", model_id=model_id, image=image)


def deployment(model_id: str, image: str = "edgecast-predictor:test", **extra: object) -> dict:
    return overlay(served(render(spec(model_id, image))["deployment"]), extra)


def node(serving: str | None, *deployments: dict) -> NodeState:
    service = load(f"service-selecting-{serving}.yaml") if serving else None
    return NodeState("edge-1", "edgecast", service, {d["metadata"]["name"]: d for d in deployments})


def test_a_switch_from_the_serving_model():
    plan = plan_from_state(spec("model-b"), node("model-a", deployment("model-a")))

    assert plan == SwitchPlan(
        spec=spec("model-b"),
        names=B,
        previous_model_id="model-a",
        deployment_step="create",
        difference=None,
        deployment_available=False,
        service_step="switch",
        service_difference=None,
        target=ServiceSelection(
            selector=B.selector,
            annotations={
                "edgecast.io/model-id": "model-b",
                "edgecast.io/previous-model-id": "model-a",
            },
        ),
        restore=ServiceSelection(
            selector=A.selector,
            annotations={"edgecast.io/model-id": "model-a", "edgecast.io/previous-model-id": None},
        ),
        remove=(A.deployment,),
        rollback=True,
        drain=True,
        rendered=render(spec("model-b")),
    )
    assert plan.changed
    assert plan.refusal is None
    assert plan.actions == (
        f"create Deployment {B.deployment}",
        "switch Service predictor-edge-1 from model model-a to model model-b",
        f"delete Deployment {A.deployment}",
    )


def test_the_first_deployment_creates_the_service_and_has_nothing_to_drain():
    plan = plan_from_state(spec("model-a"), node(None))

    assert (plan.deployment_step, plan.service_step) == ("create", "create")
    assert plan.previous_model_id is None
    assert plan.target.annotations == {"edgecast.io/model-id": "model-a"}
    assert plan.restore is None
    assert (plan.remove, plan.rollback, plan.drain) == ((), True, False)
    assert plan.actions == (
        f"create Deployment {A.deployment}",
        "create Service predictor-edge-1 selecting model model-a",
    )


def test_a_node_that_serves_the_model_already_is_left_alone():
    plan = plan_from_state(spec("model-b"), node("model-b", deployment("model-b")))

    assert not plan.changed
    assert plan.actions == ()
    assert (plan.deployment_step, plan.deployment_available) == ("reuse", True)
    assert plan.service_step == "keep"
    assert plan.previous_model_id == "model-a", "from the Service's annotation"
    assert not plan.rollback, "what serves is never removed"


def test_a_leftover_deployment_is_removed_without_a_drain_or_a_rollback():
    plan = plan_from_state(
        spec("model-b"), node("model-b", deployment("model-a"), deployment("model-b"))
    )

    assert plan.actions == (f"delete Deployment {A.deployment}",)
    assert (plan.remove, plan.rollback, plan.drain) == ((A.deployment,), False, False)


def test_an_unavailable_deployment_of_the_serving_model_is_awaited():
    live = deployment("model-b")
    live["status"] = load("deployment-model-b-starting.yaml")["status"]

    plan = plan_from_state(spec("model-b"), node("model-b", live))

    assert plan.actions == (f"wait for Deployment {B.deployment} to be available",)
    assert not plan.deployment_available


def test_a_leftover_new_deployment_with_another_spec_is_updated():
    stale = deployment("model-b", image="edgecast-predictor:old")

    plan = plan_from_state(spec("model-b"), node("model-a", deployment("model-a"), stale))

    assert plan.deployment_step == "update"
    assert plan.difference.startswith("metadata.annotations.edgecast.io/spec: ")
    assert plan.actions[0] == f"update Deployment {B.deployment} ({plan.difference})"
    assert plan.remove == (A.deployment,)


def test_a_serving_deployment_with_another_spec_is_refused():
    live = deployment("model-b", image="edgecast-predictor:old")

    plan = plan_from_state(spec("model-b"), node("model-b", live))

    assert plan.deployment_step == "refuse"
    assert plan.changed
    assert plan.refusal == (
        f"Deployment edgecast/{B.deployment} serves model model-b but differs from the spec "
        f"({plan.difference}); a switch keys Deployments by model_id, so roll out a new "
        "model_id, or switch to another model first and then back"
    )


def test_a_deployment_being_deleted_is_created_again():
    terminating = deployment("model-b", metadata={"deletionTimestamp": "2026-03-02T10:20:00Z"})

    plan = plan_from_state(spec("model-b"), node("model-a", deployment("model-a"), terminating))

    assert plan.deployment_step == "recreate"
    assert plan.actions[0] == (
        f"create Deployment {B.deployment} again once its deletion has finished"
    )


@pytest.mark.parametrize(
    ("live", "selected", "step"),
    [
        (None, False, "create"),
        ("same", False, "reuse"),
        ("same", True, "reuse"),
        ("other", False, "update"),
        ("other", True, "refuse"),
    ],
)
def test_deployment_step(live, selected, step):
    found = {
        None: None,
        "same": deployment("model-b"),
        "other": deployment("model-b", image="edgecast-predictor:old"),
    }[live]
    decided, difference = deployment_step(found, render(spec("model-b"))["deployment"], selected)
    assert decided == step
    assert (difference is not None) == (live == "other")


def test_in_place_updates_the_serving_deployment_without_a_rollback():
    live = deployment("model-b", image="edgecast-predictor:old")

    plan = plan_from_state(spec("model-b"), node("model-b", live), in_place=True)

    assert (plan.deployment_step, plan.service_step) == ("update", "keep")
    assert plan.refusal is None
    assert plan.actions == (f"update Deployment {B.deployment} ({plan.difference})",)
    assert (plan.rollback, plan.drain) == (False, False), "nothing to go back to"


def test_in_place_brings_the_service_to_the_spec():
    wanted = PredictorSpec(
        node="edge-1",
        model_id="model-b",
        image="edgecast-predictor:test",
        service_type="NodePort",
        node_port=30080,
    )
    live = deployment("model-b")
    live["metadata"]["annotations"]["edgecast.io/spec"] = render(wanted)["deployment"]["metadata"][
        "annotations"
    ]["edgecast.io/spec"]

    plan = plan_from_state(wanted, node("model-b", live), in_place=True)

    assert plan.service_step == "update"
    assert plan.service_difference == "spec.type: 'ClusterIP' != 'NodePort'"
    assert plan.deployment_step == "reuse"
    assert plan.actions == (f"update Service predictor-edge-1 ({plan.service_difference})",)


def test_in_place_changes_nothing_on_a_node_that_matches():
    plan = plan_from_state(spec("model-b"), node("model-b", deployment("model-b")), in_place=True)
    assert not plan.changed


def test_a_switch_leaves_the_service_settings_alone():
    wanted = PredictorSpec(
        node="edge-1", model_id="model-b", image="edgecast-predictor:test", service_port=9090
    )
    plan = plan_from_state(wanted, node("model-a", deployment("model-a")))
    assert (plan.service_step, plan.service_difference) == ("switch", None)


def test_a_state_of_another_node_is_refused():
    other = NodeState("edge-2", "edgecast", None, {})
    with pytest.raises(ValueError, match="read for node edge-2 in namespace edgecast"):
        plan_from_state(spec("model-b"), other)
