"""Pod switching: move a node's predictor Service to a new model's pod without losing a request.

The new model gets its own Deployment beside the serving one. Only when that Deployment is
available and its pod answers with the expected ``model_id`` through the API server does the
node's Service change its selector. The old pod keeps serving until the Service's EndpointSlices
list the new pod alone and the Service itself answers with the new model; it is removed after a
drain delay. A failure before the switch deletes the new Deployment; a failure after it puts the
selector back first. Either way the old model keeps serving and the error names the reason.

A switch is a plan, then its application: :func:`plan_switch` reads the node's objects once and
decides everything (:mod:`.plan`, plain data that check mode reports as is); :func:`apply` runs
the phases of a plan and rolls back as the plan says. The steps live beside the objects they
touch (:mod:`.deployments`, :mod:`.service`, :mod:`.diagnostics`), over :mod:`.kube`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from edgecast.deploy import deployments, service
from edgecast.deploy.kube import API_ERRORS, CheckFailed, KubeApis, NamespacedApi, api_reason
from edgecast.deploy.manifests import PredictorSpec
from edgecast.deploy.nodestate import NodeState, read_node_state
from edgecast.deploy.plan import SwitchPlan, deployment_step, plan_from_state, refusal

PHASES = (
    "create",
    "ready",
    "verify_pod",
    "switch",
    "endpoints",
    "verify_service",
    "drain",
    "cleanup",
)
# From this phase on, a failure has to put the Service's old selector back.
_FIRST_SWITCHED_PHASE = PHASES.index("switch")


class PodSwitchError(RuntimeError):
    """The switch did not happen (or was undone); the message says why and what was left."""

    def __init__(
        self,
        message: str,
        *,
        phase: str = "",
        reverted: bool = False,
        phases: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(message)
        self.phase = phase
        self.reverted = reverted
        self.phases = dict(phases or {})


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for each condition; ``cleanup`` (for the old pods to be terminating, or
    gone) defaults to the pods' grace period + 30."""

    ready: float = 300.0
    endpoints: float = 60.0
    verify: float = 15.0
    cleanup: float | None = None
    request: float = 30.0


@dataclass(frozen=True)
class SwitchResult:
    changed: bool
    model_id: str
    previous_model_id: str | None
    deployment: str
    service: str
    removed_deployments: tuple[str, ...] = ()
    phases: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def msg(self) -> str:
        if not self.changed:
            return f"Service {self.service} already selects model {self.model_id}"
        text = f"Service {self.service} selects model {self.model_id}"
        if self.previous_model_id and self.previous_model_id != self.model_id:
            text += f" (was {self.previous_model_id})"
        if self.removed_deployments:
            text += f"; removed {', '.join(self.removed_deployments)}"
        return text


def plan_switch(
    apis: KubeApis,
    spec: PredictorSpec,
    *,
    in_place: bool = False,
    state: NodeState | None = None,
    request_timeout: float = 30.0,
) -> SwitchPlan:
    """The switch to ``spec``, decided from ``state`` (the node's objects as a read moments ago
    found them) or else from the objects as they are now (reads only)."""
    spec.check()
    if state is None:
        state = read_node_state(NamespacedApi(apis, spec.namespace, request_timeout), spec.node)
    return plan_from_state(spec, state, in_place=in_place)


def pod_switch(
    apis: KubeApis,
    spec: PredictorSpec,
    *,
    in_place: bool = False,
    state: NodeState | None = None,
    timeouts: Timeouts | None = None,
    drain_seconds: float = 5.0,
    conflict_retries: int = 5,
    service_checks: int = 3,
    wait_removed: bool = False,
) -> SwitchResult:
    """Make the node's Service serve ``spec.model_id`` from a new pod, then remove the old pods.

    No change when the Service already selects the model, its Deployment is available with this
    spec and no other predictor Deployment of the node is left. Rolling back is the same call
    with the older model's spec (its bundle must be in the node's store). ``state``, the node's
    objects as :func:`.nodestate.read_node_state` found them moments before, saves reading them
    again; ``in_place`` as in :func:`.plan.plan_from_state`. Raises :class:`PodSwitchError`
    with the reason, after leaving the old model serving. Old pods that outlive the cleanup
    timeout are reported in ``warnings``: the switch itself succeeded. The cleanup ends once
    the old pods are terminating, or with ``wait_removed`` once they are gone
    (:func:`.deployments.remove_deployments`).
    """
    limits = timeouts or Timeouts()
    started = time.monotonic()
    spec.check()
    if state is None:
        kube = NamespacedApi(apis, spec.namespace, limits.request)
        try:
            state = read_node_state(kube, spec.node)
        except API_ERRORS as exc:
            raise PodSwitchError(
                f"reading the Service and Deployments of node {spec.node} in namespace "
                f"{spec.namespace} failed: {api_reason(exc)}",
                phase="read",
                phases={"total": round(time.monotonic() - started, 3)},
            ) from exc
    return apply(
        apis,
        plan_from_state(spec, state, in_place=in_place),
        timeouts=limits,
        drain_seconds=drain_seconds,
        conflict_retries=conflict_retries,
        service_checks=service_checks,
        wait_removed=wait_removed,
    )


def apply(
    apis: KubeApis,
    plan: SwitchPlan,
    *,
    timeouts: Timeouts | None = None,
    drain_seconds: float = 5.0,
    conflict_retries: int = 5,
    service_checks: int = 3,
    wait_removed: bool = False,
) -> SwitchResult:
    """Run the phases of ``plan``; on a failure, roll back as the plan says and raise."""
    limits = timeouts or Timeouts()
    kube = NamespacedApi(apis, plan.spec.namespace, limits.request)
    run = _Application(
        plan, kube, limits, drain_seconds, conflict_retries, service_checks, wait_removed
    )
    if not plan.changed:
        return run.result(changed=False)
    steps: tuple[Callable[[], None], ...] = (
        run.create,
        run.wait_available,
        run.verify_pods,
        run.switch,
        run.wait_endpoints,
        run.verify_service,
        run.drain,
        run.cleanup,
    )
    for phase, step in zip(PHASES, steps, strict=True):
        try:
            with run.timed(phase):
                step()
        except (CheckFailed, *API_ERRORS) as exc:
            raise run.failure(phase, exc) from exc
    return run.result(changed=True)


@dataclass
class _Application:
    """One plan being applied: its client, limits, phase times and what the phases found."""

    plan: SwitchPlan
    kube: NamespacedApi
    timeouts: Timeouts
    drain_seconds: float
    conflict_retries: int
    service_checks: int
    wait_removed: bool
    started: float = field(default_factory=time.monotonic)
    phases: dict[str, float] = field(default_factory=dict)
    pods: dict[str, str] = field(default_factory=dict)
    removed: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases[phase] = time.monotonic() - start

    def finished_phases(self) -> dict[str, float]:
        self.phases["total"] = time.monotonic() - self.started
        return {key: round(value, 3) for key, value in self.phases.items()}

    def result(self, *, changed: bool) -> SwitchResult:
        plan = self.plan
        return SwitchResult(
            changed=changed,
            model_id=plan.model_id,
            previous_model_id=plan.previous_model_id,
            deployment=plan.names.deployment,
            service=plan.names.service,
            removed_deployments=self.removed,
            phases=self.finished_phases(),
            warnings=self.warnings,
        )

    def create(self) -> None:
        plan, body = self.plan, self.plan.rendered["deployment"]
        step, difference = plan.deployment_step, plan.difference
        if step == "recreate":
            deployments.wait_deployment_gone(self.kube, plan.names.deployment, self.timeouts.ready)
        if step in ("create", "recreate"):
            live = deployments.create_deployment(self.kube, body)
            if live is None:
                return
            # Created by someone else since the plan was made: decide again for that one.
            step, difference = deployment_step(live, body, plan.service_step == "keep")
        if step == "refuse":
            raise CheckFailed(refusal(plan.spec, plan.names.deployment, difference))
        if step == "update":
            deployments.update_deployment(self.kube, body)

    def wait_available(self) -> None:
        names, port = self.plan.names, self.plan.spec.port
        deployments.wait_deployment_available(
            self.kube, names.deployment, names.selector, port, self.timeouts.ready
        )

    def verify_pods(self) -> None:
        names, spec = self.plan.names, self.plan.spec
        self.pods = deployments.verify_pods(
            self.kube, names.deployment, names.selector, spec.port, spec.model_id
        )

    def switch(self) -> None:
        plan, body = self.plan, self.plan.rendered["service"]
        if plan.service_step == "update":
            service.update_service(self.kube, body, plan.target, self.conflict_retries)
        else:
            service.point_service(self.kube, body, plan.target, self.conflict_retries)

    def wait_endpoints(self) -> None:
        name, timeout = self.plan.names.service, self.timeouts.endpoints
        service.wait_endpoints(self.kube, name, self.pods, timeout)

    def verify_service(self) -> None:
        name, timeout = self.plan.names.service, self.timeouts.verify
        service.verify_service(self.kube, name, self.plan.model_id, self.service_checks, timeout)

    def drain(self) -> None:
        # kube-proxy on every node, and clients holding connections, may still reach the old
        # pod for a moment after the EndpointSlices changed; no API object reports when they
        # are done, so the old pod stays up for a fixed delay.
        if self.plan.drain:
            time.sleep(max(0.0, self.drain_seconds))

    def cleanup(self) -> None:
        spec, timeout = self.plan.spec, self.timeouts.cleanup
        if timeout is None:
            timeout = spec.termination_grace_seconds + 30.0
        self.removed, self.warnings = deployments.remove_deployments(
            self.kube,
            self.plan.remove,
            node=spec.node,
            model_id=spec.model_id,
            timeout=timeout,
            wait_gone=self.wait_removed,
        )

    def failure(self, phase: str, exc: BaseException) -> PodSwitchError:
        """Roll back as the plan says; the error that reports the failure and the rollback."""
        plan, names = self.plan, self.plan.names
        done: list[str] = []
        if plan.rollback:
            switched = PHASES.index(phase) >= _FIRST_SWITCHED_PHASE
            if switched:
                done.append(
                    service.restore_service(
                        self.kube,
                        names.service,
                        plan.restore,
                        plan.previous_model_id,
                        self.conflict_retries,
                    )
                )
            done.append(deployments.delete_deployment(self.kube, names.deployment))
            if not switched and plan.restore is None:
                done.append(f"no Service {names.service} was created")
            elif not switched:
                done.append(
                    f"Service {names.service} unchanged, still selecting model "
                    f"{plan.previous_model_id}"
                )
        text = (
            f"switching node {plan.spec.node} to model {plan.model_id} failed in phase "
            f"{phase}: {api_reason(exc)}"
        )
        return PodSwitchError(
            f"{text}. Rolled back: {'; '.join(done)}" if done else text,
            phase=phase,
            reverted=plan.rollback,
            phases=self.finished_phases(),
        )
