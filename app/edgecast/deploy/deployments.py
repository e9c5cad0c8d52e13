"""The predictor Deployments of a node: start the new model's, check its pods, remove the others.

Each model gets its own Deployment beside the serving one. It counts as started when the
Deployment controller reports it available for the current generation, and as checked when
every ready pod, asked through the API server's pod proxy (the path the Role allows), answers
``GET /v1/model`` with the expected ``model_id``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from kubernetes.client.exceptions import ApiException

from edgecast.deploy.diagnostics import describe_pods
from edgecast.deploy.kube import (
    API_ERRORS,
    CheckFailed,
    NamespacedApi,
    Obj,
    Objects,
    api_reason,
    condition_reason,
    label_selector,
    labels_of,
)
from edgecast.deploy.manifests import MODEL_LABEL, model_label
from edgecast.deploy.nodestate import (
    NodeState,
    deployment_progress,
    is_ready_pod,
    is_terminating,
    node_labels,
    predictor_info,
    progress_deadline_exceeded,
    wanted_deployment_fields,
)


def create_deployment(kube: NamespacedApi, body: Obj) -> Obj | None:
    """Create the Deployment; if one of its name already exists, return that one instead."""
    try:
        kube.call(kube.apis.apps.create_namespaced_deployment, body=copy.deepcopy(body))
    except ApiException as exc:
        if exc.status != 409:
            raise
        return kube.call(kube.apis.apps.read_namespaced_deployment, body["metadata"]["name"])
    return None


def update_deployment(kube: NamespacedApi, rendered: Obj) -> None:
    """Bring a live Deployment to the rendered labels, annotations and spec."""
    kube.call(
        kube.apis.apps.patch_namespaced_deployment,
        rendered["metadata"]["name"],
        body=wanted_deployment_fields(rendered),
        _content_type="application/merge-patch+json",
    )


def wait_deployment_gone(kube: NamespacedApi, name: str, timeout: float) -> None:
    """Wait until a Deployment being deleted is gone, so that it can be created again."""

    def on_timeout(objects: Objects) -> str:
        return (
            f"Deployment {kube.namespace}/{name} was still being deleted after {timeout:g}s "
            "(waited for it to disappear before creating it again)"
        )

    kube.watch_until(
        kube.apis.apps.list_namespaced_deployment,
        check=lambda objects: name not in objects,
        timeout=timeout,
        on_timeout=on_timeout,
        field_selector=f"metadata.name={name}",
    )


def wait_deployment_available(
    kube: NamespacedApi, name: str, pod_selector: Mapping[str, str], port: int, timeout: float
) -> None:
    """Wait until the Deployment is available; a failure explains its pods."""

    def check(objects: Objects) -> bool:
        deployment = objects.get(name)
        if deployment is None:
            raise CheckFailed(f"Deployment {kube.namespace}/{name} was deleted while starting")
        exceeded = progress_deadline_exceeded(deployment)
        if exceeded is not None:
            raise CheckFailed(
                f"Deployment {kube.namespace}/{name} exceeded its progress deadline "
                f"({condition_reason(exceeded)}); {describe_pods(kube, pod_selector, port)}"
            )
        return deployment_progress(deployment)[0]

    def on_timeout(objects: Objects) -> str:
        return (
            f"{not_available(kube.namespace, name, objects.get(name), timeout)}; "
            f"{describe_pods(kube, pod_selector, port)}"
        )

    kube.watch_until(
        kube.apis.apps.list_namespaced_deployment,
        check=check,
        timeout=timeout,
        on_timeout=on_timeout,
        field_selector=f"metadata.name={name}",
    )


def wait_serving_available(kube: NamespacedApi, state: NodeState, timeout: float) -> None:
    """Wait until the Deployment of the model the node's Service selects is available."""
    selected = state.selected_deployment()
    if selected is None:
        raise CheckFailed(f"no Deployment to wait for: {predictor_info(state).summary}")
    spec = selected.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    ports = [p for c in pod.get("containers") or [] for p in c.get("ports") or []]
    wait_deployment_available(
        kube,
        selected["metadata"]["name"],
        (spec.get("selector") or {}).get("matchLabels") or {},
        int(ports[0]["containerPort"]) if ports else 8080,
        timeout,
    )


def not_available(namespace: str, name: str, deployment: Obj | None, timeout: float) -> str:
    """What the wait for availability waited for, and the Deployment's status when it gave up."""
    last = deployment_progress(deployment)[1] if deployment else "not found"
    replicas = (deployment or {}).get("spec", {}).get("replicas", 1)
    return (
        f"Deployment {namespace}/{name} was not available within {timeout:g}s "
        "(waited for status.observedGeneration >= metadata.generation, "
        f"replicas, updatedReplicas, readyReplicas and availableReplicas == {replicas} "
        f"and condition Available=True); last status: {last}"
    )


def verify_pods(
    kube: NamespacedApi, deployment: str, selector: Mapping[str, str], port: int, model_id: str
) -> dict[str, str]:
    """Ask every ready pod of ``selector`` which model it serves; their IPs by pod name."""
    pods = [
        pod
        for pod in kube.items(
            kube.apis.core.list_namespaced_pod, label_selector=label_selector(selector)
        )
        if is_ready_pod(pod)
    ]
    if not pods:
        raise CheckFailed(
            f"Deployment {kube.namespace}/{deployment} reports available but no pod of its "
            "selector is Ready"
        )
    found: dict[str, str] = {}
    for pod in pods:
        name = pod["metadata"]["name"]
        try:
            answer = kube.pod_get(name, port, "v1/model")
        except API_ERRORS as exc:
            raise CheckFailed(
                f"pod {kube.namespace}/{name} did not answer GET /v1/model through the API "
                f"server's pod proxy: {api_reason(exc)}"
            ) from exc
        served = answer.get("model_id")
        if served != model_id:
            raise CheckFailed(
                f"pod {kube.namespace}/{name} answers GET /v1/model with model_id {served!r}, "
                f"expected {model_id!r}"
            )
        found[name] = str((pod.get("status") or {}).get("podIP") or "")
    return found


def delete_deployment(kube: NamespacedApi, name: str) -> str:
    """Delete the new Deployment on a rollback; what happened, for the failure's message."""
    try:
        kube.delete(
            kube.apis.apps.delete_namespaced_deployment, name, propagation_policy="Background"
        )
    except API_ERRORS as exc:
        return f"Deployment {name} could NOT be deleted ({api_reason(exc)})"
    return f"Deployment {name} deleted"


def remove_deployments(
    kube: NamespacedApi,
    deployments: Sequence[str],
    *,
    node: str,
    model_id: str,
    timeout: float,
    wait_gone: bool = False,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Delete the node's old Deployments, then wait (bounded) until every pod of the node but
    ``model_id``'s is terminating, or with ``wait_gone`` until none is left. Returns the
    Deployments removed and warnings: the switch has happened, so a failure here is reported,
    not raised.

    A terminating pod is out of every Service already; what it has left is its own graceful
    exit (the predictor's shutdown delay and the close of kept-alive connections), which the
    kubelet bounds by the pod's termination grace period. Waiting for it adds that exit to every
    node's rollout; ``wait_gone`` does, for a run that must end with the old pods gone.
    """
    keep_label = model_label(model_id)
    removed: list[str] = []
    warnings: list[str] = []
    # Foreground keeps a Deployment until its pods are gone; Background deletes it now and its
    # ReplicaSet and pods after it.
    propagation = "Foreground" if wait_gone else "Background"
    for name in deployments:
        try:
            kube.delete(
                kube.apis.apps.delete_namespaced_deployment, name, propagation_policy=propagation
            )
            removed.append(name)
        except API_ERRORS as exc:
            warnings.append(f"Deployment {name} was not deleted: {api_reason(exc)}")
    if not removed:
        return (), tuple(warnings)

    def left(pods: Objects) -> list[str]:
        """The old pods still to wait for."""
        old = pods_of_other_models(pods, keep_label)
        return old if wait_gone else [name for name in old if not is_terminating(pods[name])]

    def on_timeout(pods: Objects) -> str:
        state = "present" if wait_gone else "not terminating"
        return (
            f"old predictor pods {', '.join(left(pods))} were still {state} {timeout:g}s "
            f"after their Deployments were deleted (waited for no pod of node {node} but model "
            f"{model_id}'s{'' if wait_gone else ' to be left running'})"
        )

    try:
        kube.watch_until(
            kube.apis.core.list_namespaced_pod,
            check=lambda pods: not left(pods),
            timeout=timeout,
            on_timeout=on_timeout,
            label_selector=label_selector(node_labels(node)),
        )
    except (CheckFailed, *API_ERRORS) as exc:
        warnings.append(api_reason(exc))
    return tuple(removed), tuple(warnings)


def pods_of_other_models(pods: Objects, keep_label: str) -> list[str]:
    """The names of the pods whose model label is not ``keep_label``."""
    return sorted(
        name for name, pod in pods.items() if labels_of(pod).get(MODEL_LABEL) != keep_label
    )
