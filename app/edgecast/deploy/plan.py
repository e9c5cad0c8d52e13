"""What a pod switch will do to one node, decided from one read of its objects.

Every decision of a switch is made here, from a :class:`~edgecast.deploy.nodestate.NodeState`,
without calls: whether anything changes, what happens to the new model's Deployment and to the
Service, which Deployments go afterwards, whether the old pods get a drain delay, and what a
failure puts back. The plan is plain data: check mode reports it, :func:`.podswitch.apply` runs
it, and a test asserts it against recorded objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from edgecast.deploy.kube import Obj
from edgecast.deploy.manifests import (
    MODEL_ID_ANNOTATION,
    MODEL_LABEL,
    PredictorNames,
    PredictorSpec,
    names_of,
    render,
)
from edgecast.deploy.nodestate import (
    PREVIOUS_MODEL_ANNOTATION,
    NodeState,
    deployment_progress,
    is_terminating,
    spec_difference,
)
from edgecast.deploy.service import ServiceSelection, service_difference

# create: none exists; recreate: one is being deleted, create it once it is gone; update: one
# exists with another spec; reuse: one exists with this spec; refuse: one with another spec is
# what the Service selects already.
DeploymentStep = Literal["create", "recreate", "update", "reuse", "refuse"]
# create: none exists; switch: it selects another model; keep: it selects this model; update:
# it selects this model but its type, ports or labels differ (only in place).
ServiceStep = Literal["create", "switch", "keep", "update"]


@dataclass(frozen=True)
class SwitchPlan:
    """Everything a switch will do to one node."""

    spec: PredictorSpec
    names: PredictorNames
    # The model the Service selects now, or (when it selects this model already) before.
    previous_model_id: str | None
    deployment_step: DeploymentStep
    # How the live Deployment differs from the rendered one (for update and refuse).
    difference: str | None
    # Whether the reused Deployment is available already.
    deployment_available: bool
    service_step: ServiceStep
    # How the live Service differs from the rendered one (for update).
    service_difference: str | None
    target: ServiceSelection
    # What a rollback puts back; None when there was no Service.
    restore: ServiceSelection | None
    # The node's other predictor Deployments, deleted once the new model serves.
    remove: tuple[str, ...]
    # Whether a failure deletes the new Deployment (and restores the Service): not when the
    # Service selected this model already, as that Deployment is what serves.
    rollback: bool
    # Whether the old pods keep running for the drain delay once the Service left them.
    drain: bool
    rendered: dict[str, Obj] = field(repr=False)

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    @property
    def refusal(self) -> str | None:
        """Why the switch cannot be made, when the plan refuses it."""
        if self.deployment_step != "refuse":
            return None
        return refusal(self.spec, self.names.deployment, self.difference)

    @property
    def actions(self) -> tuple[str, ...]:
        """What will change, in words (check mode's report)."""
        deployment, service = self.names.deployment, self.names.service
        actions = {
            "create": [f"create Deployment {deployment}"],
            "recreate": [f"create Deployment {deployment} again once its deletion has finished"],
            "update": [f"update Deployment {deployment} ({self.difference})"],
            "refuse": [f"refuse to change Deployment {deployment} ({self.difference})"],
            "reuse": []
            if self.deployment_available
            else [f"wait for Deployment {deployment} to be available"],
        }[self.deployment_step]
        if self.service_step == "create":
            actions.append(f"create Service {service} selecting model {self.model_id}")
        elif self.service_step == "update":
            actions.append(f"update Service {service} ({self.service_difference})")
        elif self.service_step == "switch":
            actions.append(
                f"switch Service {service} from model {self.previous_model_id} to model "
                f"{self.model_id}"
            )
        actions.extend(f"delete Deployment {name}" for name in self.remove)
        return tuple(actions)


def refusal(spec: PredictorSpec, deployment: str, difference: str | None) -> str:
    return (
        f"Deployment {spec.namespace}/{deployment} serves model {spec.model_id} but differs "
        f"from the spec ({difference}); a switch keys Deployments by model_id, so roll out a "
        "new model_id, or switch to another model first and then back"
    )


def deployment_step(
    live: Obj | None, rendered: Obj, selected: bool
) -> tuple[DeploymentStep, str | None]:
    """What to do with the new model's Deployment as found, and how it differs from the spec.

    A Deployment that differs is updated, unless the Service selects it already: then it is
    what serves, and changing it under the Service's clients would not be a pod switch.
    """
    if live is None:
        return "create", None
    if is_terminating(live):
        return "recreate", None
    difference = spec_difference(live, rendered)
    if difference is None:
        return "reuse", None
    return ("refuse" if selected else "update"), difference


def plan_from_state(spec: PredictorSpec, state: NodeState, *, in_place: bool = False) -> SwitchPlan:
    """The switch to ``spec`` of a node found in ``state``.

    ``in_place``: when the Service selects the model already, a Deployment or Service that
    differs from the spec is brought to it rather than refused. The Deployment's Recreate
    strategy stops the old pod first, a gap for clients: the deploy role's way for a node's
    first model, never a rollout's.
    """
    state.check_of(spec.node, spec.namespace)
    names = names_of(spec)
    rendered = render(spec)
    selected = state.selected_label == names.selector[MODEL_LABEL]
    previous = (
        state.annotation(PREVIOUS_MODEL_ANNOTATION) if selected else state.selected_model_id()
    )
    live = state.deployments.get(names.deployment)
    step, difference = deployment_step(live, rendered["deployment"], selected and not in_place)
    service_step: ServiceStep = "keep" if selected else "switch"
    service_change = None
    if state.service is None:
        service_step = "create"
    elif selected and in_place:
        service_change = service_difference(state.service, rendered["service"])
        service_step = "keep" if service_change is None else "update"
    remove = tuple(sorted(name for name in state.deployments if name != names.deployment))
    annotations: dict[str, str | None] = {MODEL_ID_ANNOTATION: spec.model_id}
    if previous and previous != spec.model_id:
        annotations[PREVIOUS_MODEL_ANNOTATION] = previous
    restore = None
    if state.service is not None:
        restore = ServiceSelection(
            selector=state.selector,
            annotations={
                key: state.annotation(key)
                for key in (MODEL_ID_ANNOTATION, PREVIOUS_MODEL_ANNOTATION)
            },
        )
    return SwitchPlan(
        spec=spec,
        names=names,
        previous_model_id=previous,
        deployment_step=step,
        difference=difference,
        deployment_available=live is not None and step == "reuse" and deployment_progress(live)[0],
        service_step=service_step,
        service_difference=service_change,
        target=ServiceSelection(selector=dict(names.selector), annotations=annotations),
        restore=restore,
        remove=remove,
        rollback=not selected,
        drain=not selected and state.service is not None and bool(remove),
        rendered=rendered,
    )
