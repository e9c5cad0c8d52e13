"""What a node serves, and whether its predictor Deployment is the one its spec renders.

A node's predictor objects are its Service (which selects one model's pods by the model label)
and one Deployment per model started on it. The Service's annotations remember the model it
selects and the one it selected before, so a rollback knows where to go back to even after the
old Deployment is gone. :func:`predictor_info` is the one answer to "which model does node N
serve": the deploy role, the rollout and the switch all read it from a :class:`NodeState`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgecast.deploy.kube import (
    NamespacedApi,
    Obj,
    annotations_of,
    condition_reason,
    label_selector,
    labels_of,
    short,
)
from edgecast.deploy.manifests import (
    APP_NAME,
    MODEL_ID_ANNOTATION,
    MODEL_LABEL,
    NODE_LABEL,
    SPEC_ANNOTATION,
    ManifestError,
    PredictorSpec,
    model_label,
    node_key,
    recorded_spec,
    service_name,
)

PREVIOUS_MODEL_ANNOTATION = "edgecast.io/previous-model-id"
NODE_ANNOTATION = "edgecast.io/node"

_REPLICA_FIELDS = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")


def node_labels(node: str) -> dict[str, str]:
    """The labels every predictor object of the node carries, whatever its model."""
    return {"app.kubernetes.io/name": APP_NAME, NODE_LABEL: node_key(node)}


@dataclass(frozen=True)
class NodeState:
    """The node's Service and predictor Deployments (by name), as read at one moment."""

    node: str
    namespace: str
    service: Obj | None
    deployments: dict[str, Obj]

    @property
    def selector(self) -> dict[str, str]:
        if self.service is None:
            return {}
        return dict((self.service.get("spec") or {}).get("selector") or {})

    @property
    def selected_label(self) -> str | None:
        return self.selector.get(MODEL_LABEL)

    def annotation(self, key: str) -> str | None:
        if self.service is None:
            return None
        return annotations_of(self.service).get(key)

    def selected_deployment(self) -> Obj | None:
        label = self.selected_label
        for deployment in self.deployments.values():
            if labels_of(deployment).get(MODEL_LABEL) == label:
                return deployment
        return None

    def selected_model_id(self) -> str | None:
        """The model the Service selects: from its Deployment, its annotation, else the label."""
        label = self.selected_label
        if label is None:
            return None
        deployment = self.selected_deployment()
        if deployment is not None:
            found = annotations_of(deployment).get(MODEL_ID_ANNOTATION)
            if found:
                return str(found)
        annotated = self.annotation(MODEL_ID_ANNOTATION)
        if annotated and model_label(annotated) == label:
            return annotated
        return label

    def check_of(self, node: str, namespace: str) -> None:
        """ValueError unless this is the state of ``node`` in ``namespace``."""
        if (node_key(self.node), self.namespace) != (node_key(node), namespace):
            raise ValueError(
                f"the node state was read for node {self.node} in namespace {self.namespace}, "
                f"not for node {node} in namespace {namespace}"
            )

    def record(self) -> Obj:
        """The state as plain data, so that a later task plans from it instead of reading again
        (``managedFields`` dropped: nothing here reads them)."""
        return {
            "node": self.node,
            "namespace": self.namespace,
            "service": _without_managed_fields(self.service),
            "deployments": [_without_managed_fields(d) for d in self.deployments.values()],
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> NodeState:
        """The state :meth:`record` gave; ValueError naming what does not fit."""
        node, namespace = record.get("node"), record.get("namespace")
        service, deployments = record.get("service"), record.get("deployments")
        if not (isinstance(node, str) and node and isinstance(namespace, str) and namespace):
            raise ValueError("a node state names its node and namespace")
        if service is not None and not isinstance(service, dict):
            raise ValueError("a node state's service is an API object or null")
        if not isinstance(deployments, list) or not all(
            isinstance(d, dict) and isinstance((d.get("metadata") or {}).get("name"), str)
            for d in deployments
        ):
            raise ValueError("a node state's deployments are a list of named API objects")
        return cls(node, namespace, service, {d["metadata"]["name"]: d for d in deployments})


def _without_managed_fields(obj: Obj | None) -> Obj | None:
    if obj is None:
        return None
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": metadata}


def read_node_state(kube: NamespacedApi, node: str) -> NodeState:
    """The node's Service and predictor Deployments: two reads, in the namespace only."""
    service = kube.get_or_none(kube.apis.core.read_namespaced_service, service_name(node))
    deployments = kube.items(
        kube.apis.apps.list_namespaced_deployment,
        label_selector=label_selector(node_labels(node)),
    )
    return NodeState(node, kube.namespace, service, {d["metadata"]["name"]: d for d in deployments})


@dataclass(frozen=True)
class PredictorInfo:
    """Which model a node serves, and what deploying or rolling out on it needs to know."""

    node: str
    namespace: str
    # The node's Service, whether or not it exists yet.
    service: str
    # The model the Service selects, and the one it selected before; None without a Service.
    model_id: str | None
    previous_model_id: str | None
    # The selected model's Deployment, and whether the Deployment controller reports it available.
    deployment: str | None
    available: bool
    # The spec that Deployment was made with (model_id included); None when it records none.
    spec: PredictorSpec | None
    # Why the Deployment gives no spec, when it exists but its annotation does not fit.
    spec_problem: str | None
    # Models the node's predictor objects refer to: a store prune must keep their bundles.
    models_in_use: tuple[str, ...]

    @property
    def summary(self) -> str:
        where = f"node {self.node} in namespace {self.namespace}"
        if self.model_id is None:
            return f"{where} has no predictor Service {self.service}"
        text = f"{where}: Service {self.service} selects model {self.model_id}"
        if self.deployment is None:
            text += ", which has no Deployment"
        else:
            state = "available" if self.available else "not available"
            text += f" (Deployment {self.deployment}, {state})"
        if self.previous_model_id:
            text += f"; before it {self.previous_model_id}"
        return text


def predictor_info(state: NodeState) -> PredictorInfo:
    """What ``state`` says the node serves."""
    model_id = state.selected_model_id()
    previous = state.annotation(PREVIOUS_MODEL_ANNOTATION)
    selected = state.selected_deployment() if model_id is not None else None
    spec, problem = None, None
    if selected is not None and model_id is not None:
        name = selected["metadata"]["name"]
        recorded = annotations_of(selected).get(SPEC_ANNOTATION)
        if recorded is None:
            problem = f"Deployment {name} has no {SPEC_ANNOTATION} annotation"
        else:
            try:
                spec = recorded_spec(recorded, model_id)
            except ManifestError as exc:
                problem = f"Deployment {name}: {exc}"
    in_use = {annotations_of(d).get(MODEL_ID_ANNOTATION) for d in state.deployments.values()}
    in_use.update((model_id, previous))
    return PredictorInfo(
        node=state.node,
        namespace=state.namespace,
        service=service_name(state.node),
        model_id=model_id,
        previous_model_id=previous,
        deployment=selected["metadata"]["name"] if selected is not None else None,
        available=selected is not None and deployment_progress(selected)[0],
        spec=spec,
        spec_problem=problem,
        models_in_use=tuple(sorted(m for m in in_use if m)),
    )


def deployment_progress(deployment: Obj) -> tuple[bool, str]:
    """Whether the Deployment controller reports the Deployment rolled out and available."""
    metadata = deployment.get("metadata") or {}
    status = deployment.get("status") or {}
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    generation = metadata.get("generation", 0)
    observed = status.get("observedGeneration", 0)
    counts = {key: status.get(key, 0) for key in _REPLICA_FIELDS}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    available = conditions.get("Available", {}).get("status") == "True"
    done = (
        observed >= generation
        and all(value == wanted for value in counts.values())
        and available
        and not metadata.get("deletionTimestamp")
    )
    parts = [f"observedGeneration={observed}", f"generation={generation}"]
    parts += [f"{key}={value}" for key, value in counts.items()]
    for kind in ("Available", "Progressing"):
        condition = conditions.get(kind)
        if condition:
            parts.append(f"{kind}={condition.get('status')} ({condition_reason(condition)})")
        else:
            parts.append(f"{kind} condition absent")
    return done, ", ".join(parts)


def progress_deadline_exceeded(deployment: Obj) -> Obj | None:
    """The Progressing condition that says the Deployment gave up, if it did."""
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == "Progressing"
            and condition.get("status") == "False"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return condition
    return None


def is_terminating(obj: Obj) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def is_ready_pod(pod: Obj) -> bool:
    if is_terminating(pod):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def wanted_deployment_fields(deployment: Obj) -> Obj:
    """The parts of a rendered Deployment that must match a live one for it to be reused."""
    metadata = deployment["metadata"]
    return {
        "metadata": {
            "labels": metadata.get("labels") or {},
            "annotations": metadata.get("annotations") or {},
        },
        "spec": deployment["spec"],
    }


def first_difference(have: Any, want: Any, path: str = "") -> str | None:
    """Where ``have`` lacks or changes a value of ``want``; server defaults in ``have`` are fine."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return f"{path or '.'}: {have!r} is not a mapping"
        for key, value in want.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in have:
                return f"{where}: missing"
            found = first_difference(have[key], value, where)
            if found:
                return found
        return None
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return f"{path}: {short(have, 80)} != {short(want, 80)}"
        for index, (got, value) in enumerate(zip(have, want, strict=True)):
            found = first_difference(got, value, f"{path}[{index}]")
            if found:
                return found
        return None
    if have != want:
        return f"{path}: {short(repr(have), 80)} != {short(repr(want), 80)}"
    return None


def spec_difference(live: Mapping[str, Any], rendered: Obj) -> str | None:
    """Where a live Deployment differs from the rendered one, or None when it can be reused."""
    return first_difference(live, wanted_deployment_fields(rendered))
