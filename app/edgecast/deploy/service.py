"""The node's Service: switch its selector, wait for its endpoints, check it, switch it back.

The selector changes by a merge patch guarded by the Service's resourceVersion, retried on 409
Conflict, so a concurrent writer's change is never overwritten unseen. The switch counts as done
when the Service's EndpointSlices list the new pods alone, ready, and the Service, asked through
the API server's service proxy, answers with the new model several times in a row.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.utils import Backoff, retry_on_conflict

from edgecast.deploy.kube import (
    API_ERRORS,
    CheckFailed,
    NamespacedApi,
    Obj,
    Objects,
    annotations_of,
    api_reason,
    labels_of,
)
from edgecast.deploy.nodestate import first_difference

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# The API server's service proxy resolves endpoints from its own view of the Service, which no
# watchable object exposes; its answers are re-asked at this interval until the verify timeout.
_SERVICE_RETRY_SECONDS = 0.2


@dataclass(frozen=True)
class ServiceSelection:
    """A Service's selector with the model annotations that go with it (None: no annotation)."""

    selector: dict[str, str]
    annotations: dict[str, str | None]


def conflict_backoff(retries: int) -> Backoff:
    return Backoff(steps=max(0, retries) + 1, duration=0.05, factor=2.0, jitter=0.1, cap=1.0)


def selector_patch(service: Obj, selection: ServiceSelection) -> Obj | None:
    """A merge patch replacing the Service's selector, guarded by its resourceVersion."""
    metadata = service.get("metadata") or {}
    current = dict((service.get("spec") or {}).get("selector") or {})
    if current == selection.selector:
        return None
    current_annotations = annotations_of(service)
    changed_annotations = {
        key: value
        for key, value in selection.annotations.items()
        if current_annotations.get(key) != value
    }
    patch_selector: dict[str, str | None] = {
        key: None for key in current if key not in selection.selector
    }
    patch_selector.update(selection.selector)
    patch: Obj = {
        "metadata": {"resourceVersion": metadata.get("resourceVersion")},
        "spec": {"selector": patch_selector},
    }
    if changed_annotations:
        patch["metadata"]["annotations"] = changed_annotations
    return patch


def service_difference(live: Obj, rendered: Obj) -> str | None:
    """Where the live Service differs from the rendered one in what a switch leaves alone (its
    type, ports, labels); server defaults such as the clusterIP are fine."""
    wanted = {
        "metadata": {"labels": labels_of(rendered), "annotations": annotations_of(rendered)},
        "spec": {key: value for key, value in rendered["spec"].items() if key != "selector"},
    }
    return first_difference(live, wanted)


def update_service(
    kube: NamespacedApi, body: Obj, selection: ServiceSelection, conflict_retries: int
) -> None:
    """Bring the live Service to the rendered ``body`` with ``selection``, retrying 409s."""
    name = body["metadata"]["name"]

    def attempt() -> None:
        live = kube.call(kube.apis.core.read_namespaced_service, name)
        patch = {
            "metadata": {
                "resourceVersion": (live.get("metadata") or {}).get("resourceVersion"),
                "labels": labels_of(body),
                "annotations": {**annotations_of(body), **selection.annotations},
            },
            "spec": {**body["spec"], "selector": selection.selector},
        }
        kube.call(
            kube.apis.core.patch_namespaced_service,
            name,
            body=patch,
            _content_type="application/merge-patch+json",
        )

    retry_on_conflict(attempt, backoff=conflict_backoff(conflict_retries))


def _patch_selector(kube: NamespacedApi, name: str, selection: ServiceSelection) -> bool:
    """Patch the live Service to ``selection``; False when there is no Service to patch."""
    service = kube.get_or_none(kube.apis.core.read_namespaced_service, name)
    if service is None:
        return False
    patch = selector_patch(service, selection)
    if patch is not None:
        kube.call(
            kube.apis.core.patch_namespaced_service,
            name,
            body=patch,
            _content_type="application/merge-patch+json",
        )
    return True


def point_service(
    kube: NamespacedApi, body: Obj, selection: ServiceSelection, conflict_retries: int
) -> None:
    """Point the Service at ``selection`` (creating it from ``body`` if absent), retrying 409s."""
    name = body["metadata"]["name"]
    attempts = 0

    def attempt() -> None:
        nonlocal attempts
        attempts += 1
        if not _patch_selector(kube, name, selection):
            created = copy.deepcopy(body)
            created["metadata"].setdefault("annotations", {}).update(selection.annotations)
            kube.call(kube.apis.core.create_namespaced_service, body=created)

    try:
        retry_on_conflict(attempt, backoff=conflict_backoff(conflict_retries))
    except ApiException as exc:
        if exc.status != 409:
            raise
        raise CheckFailed(
            f"Service {kube.namespace}/{name} changed under every one of {attempts} attempts "
            f"(409 Conflict on metadata.resourceVersion): {api_reason(exc)}"
        ) from exc


def restore_service(
    kube: NamespacedApi,
    name: str,
    before: ServiceSelection | None,
    model_id: str | None,
    conflict_retries: int,
) -> str:
    """Put back the selection ``before`` the switch (serving ``model_id``); what happened.

    A Service this switch created is left, without endpoints: the rollout Role cannot delete
    Services.
    """
    if before is None:
        return (
            f"Service {name} was created by this switch and is left without endpoints (the "
            "rollout Role cannot delete Services)"
        )
    try:
        retry_on_conflict(
            lambda: _patch_selector(kube, name, before),
            backoff=conflict_backoff(conflict_retries),
        )
    except API_ERRORS as exc:
        return (
            f"Service {name} could NOT be switched back to model {model_id} ({api_reason(exc)}): "
            f"set its selector to {before.selector} by hand"
        )
    return f"Service {name} selects model {model_id} again"


def endpoints_converged(slices: Objects, pods: Mapping[str, str]) -> bool:
    """Whether the EndpointSlices list ``pods`` (IPs by name) alone, ready, at least one."""
    ips = {ip for ip in pods.values() if ip}

    def belongs(endpoint: Mapping[str, Any]) -> bool:
        target = endpoint.get("targetRef") or {}
        if target:
            return target.get("kind") == "Pod" and target.get("name") in pods
        return bool(ips.intersection(endpoint.get("addresses") or []))

    endpoints = [e for s in slices.values() for e in s.get("endpoints") or []]
    return bool(endpoints) and all(
        belongs(e) and (e.get("conditions") or {}).get("ready") is not False for e in endpoints
    )


def describe_endpoints(slices: Objects) -> str:
    described = []
    for endpoint in (e for s in slices.values() for e in s.get("endpoints") or []):
        target = (endpoint.get("targetRef") or {}).get("name") or ",".join(
            endpoint.get("addresses") or []
        )
        conditions = endpoint.get("conditions") or {}
        flags = ", ".join(f"{key}={value}" for key, value in sorted(conditions.items()))
        described.append(f"{target} ({flags or 'no conditions'})")
    return "; ".join(described) or "none"


def wait_endpoints(
    kube: NamespacedApi, service: str, pods: Mapping[str, str], timeout: float
) -> None:
    """Wait until the Service's EndpointSlices list the new pods alone (the old one is out)."""

    def on_timeout(slices: Objects) -> str:
        return (
            f"the EndpointSlices of Service {kube.namespace}/{service} did not converge within "
            f"{timeout:g}s (waited for ready endpoints of the new pods "
            f"{', '.join(sorted(pods))} only, at least one); last endpoints: "
            f"{describe_endpoints(slices)}"
        )

    kube.watch_until(
        kube.apis.discovery.list_namespaced_endpoint_slice,
        check=lambda slices: endpoints_converged(slices, pods),
        timeout=timeout,
        on_timeout=on_timeout,
        label_selector=f"{SERVICE_NAME_LABEL}={service}",
    )


def verify_service(
    kube: NamespacedApi, service: str, model_id: str, in_a_row: int, timeout: float
) -> None:
    """The Service, through the API server's proxy, answers with ``model_id`` ``in_a_row`` times."""
    deadline = time.monotonic() + timeout
    wanted = max(1, in_a_row)
    seen = 0
    last = "no answer"
    while True:
        try:
            answer = kube.service_get(service, "http", "v1/model")
            served = answer.get("model_id")
            last = f"model_id {served!r}"
        except API_ERRORS as exc:
            served = None
            last = api_reason(exc)
        seen = seen + 1 if served == model_id else 0
        if seen >= wanted:
            return
        if time.monotonic() >= deadline:
            raise CheckFailed(
                f"Service {kube.namespace}/{service} did not answer GET /v1/model with model_id "
                f"{model_id!r} {wanted} times in a row within {timeout:g}s; last answer: {last}"
            )
        if seen == 0:
            time.sleep(_SERVICE_RETRY_SECONDS)
