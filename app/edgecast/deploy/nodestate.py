"""What a node serves, and whether its predictor Deployment is the one its spec renders.

A node's predictor objects are its Service (which selects one model's pods by the model label)
and one Deployment per model started on it. The Service's annotations remember the model it
selects and the one it selected before, so a rollback knows where to go back to even after the
old Deployment is gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgecast.deploy.kube import (
    KubeApis,
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
    PredictorNames,
    model_label,
)

PREVIOUS_MODEL_ANNOTATION = "edgecast.io/previous-model-id"
NODE_ANNOTATION = "edgecast.io/node"

_REPLICA_FIELDS = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")


def node_labels(names: PredictorNames) -> dict[str, str]:
    """The labels every predictor object of the node carries, whatever its model."""
    return {"app.kubernetes.io/name": APP_NAME, NODE_LABEL: names.labels[NODE_LABEL]}


@dataclass(frozen=True)
class NodeState:
    """The node's Service and predictor Deployments (by name), as read at one moment."""

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


def read_node_state(kube: NamespacedApi, names: PredictorNames) -> NodeState:
    service = kube.get_or_none(kube.apis.core.read_namespaced_service, names.service)
    deployments = kube.items(
        kube.apis.apps.list_namespaced_deployment,
        label_selector=label_selector(node_labels(names)),
    )
    return NodeState(service, {d["metadata"]["name"]: d for d in deployments})


@dataclass(frozen=True)
class ServingModel:
    """The model a node's Service selects, and the one it selected before."""

    node: str
    service: str
    model_id: str | None
    previous_model_id: str | None
    deployment: str | None


def serving_models(
    apis: KubeApis, namespace: str, *, request_timeout: float = 30.0
) -> dict[str, ServingModel]:
    """Which model each node's predictor Service selects, keyed by node name."""
    kube = NamespacedApi(apis, namespace, request_timeout)
    app = f"app.kubernetes.io/name={APP_NAME}"
    return serving_models_of(
        kube.items(apis.core.list_namespaced_service, label_selector=app),
        kube.items(apis.apps.list_namespaced_deployment, label_selector=app),
    )


def serving_models_of(
    services: Iterable[Obj], deployments: Iterable[Obj]
) -> dict[str, ServingModel]:
    """:func:`serving_models` of listed Services and Deployments."""
    deployments = list(deployments)
    found: dict[str, ServingModel] = {}
    for service in services:
        node_key = labels_of(service).get(NODE_LABEL)
        node = annotations_of(service).get(NODE_ANNOTATION) or node_key
        if not node:
            continue
        own = {
            d["metadata"]["name"]: d
            for d in deployments
            if labels_of(d).get(NODE_LABEL) == node_key
        }
        state = NodeState(service, own)
        selected = state.selected_deployment()
        found[node] = ServingModel(
            node=node,
            service=(service.get("metadata") or {}).get("name", ""),
            model_id=state.selected_model_id(),
            previous_model_id=state.annotation(PREVIOUS_MODEL_ANNOTATION),
            deployment=selected["metadata"]["name"] if selected else None,
        )
    return found


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
