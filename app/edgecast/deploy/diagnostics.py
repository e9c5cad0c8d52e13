"""Why a new predictor pod is not ready, in the words a failed task can show.

A timeout alone sends the user to ``kubectl describe``; these lines carry what it would show:
the pod's phase and container states, the predictor's own ``/readyz`` reason (the parity gate's
figures, say), the conditions that are not True and the last Warning events. Everything here
only explains a failure, so a read that fails is reported in the text, never raised.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from edgecast.deploy.kube import (
    API_ERRORS,
    NamespacedApi,
    Obj,
    api_reason,
    condition_reason,
    label_selector,
    short,
)
from edgecast.deploy.nodestate import is_ready_pod, is_terminating


def describe_pods(kube: NamespacedApi, selector: Mapping[str, str], port: int) -> str:
    """Why the pods of ``selector`` are not ready, from their status, /readyz and events."""
    try:
        pods = kube.items(
            kube.apis.core.list_namespaced_pod, label_selector=label_selector(selector)
        )
    except API_ERRORS as exc:
        return f"pods could not be read ({api_reason(exc)})"
    if not pods:
        return "no pod exists for the Deployment's selector (see the Deployment's events)"
    return "; ".join(describe_pod(kube, pod, port) for pod in pods)


def describe_pod(kube: NamespacedApi, pod: Obj, port: int) -> str:
    name = pod["metadata"]["name"]
    parts = pod_state(pod)
    if (pod.get("status") or {}).get("phase") == "Running" and not is_ready_pod(pod):
        parts.extend(readiness_reason(kube, name, port))
    parts.extend(unmet_conditions(pod))
    parts.extend(warning_events(kube, name))
    return ", ".join(parts)


def pod_state(pod: Obj) -> list[str]:
    """The pod's phase, whether it is terminating, and what its containers are doing."""
    status = pod.get("status") or {}
    parts = [f"pod {pod['metadata']['name']}: phase {status.get('phase', 'unknown')}"]
    if is_terminating(pod):
        parts.append("terminating")
    statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    for container in statuses:
        parts.extend(container_state(container))
    return parts


def container_state(container: Mapping[str, Any]) -> list[str]:
    name = container.get("name", "?")
    state = container.get("state") or {}
    parts: list[str] = []
    if "waiting" in state:
        waiting = state["waiting"] or {}
        text = f"container {name} waiting: {waiting.get('reason', 'unknown reason')}"
        if waiting.get("message"):
            text += f" ({short(waiting['message'])})"
        parts.append(text)
    elif "terminated" in state:
        ended = state["terminated"] or {}
        parts.append(
            f"container {name} terminated: {ended.get('reason', 'unknown reason')} "
            f"(exit code {ended.get('exitCode')})"
        )
    elif "running" in state and not container.get("ready"):
        parts.append(f"container {name} running but not ready (readiness probe failing)")
    last = (container.get("lastState") or {}).get("terminated")
    if last:
        parts.append(
            f"last exit of {name}: {last.get('reason', 'unknown')} (exit code "
            f"{last.get('exitCode')})"
        )
    if container.get("restartCount"):
        parts.append(f"{container['restartCount']} restarts")
    return parts


def unmet_conditions(pod: Obj) -> list[str]:
    """The pod's conditions that are not True and say why."""
    return [
        f"{condition.get('type')}=False ({condition_reason(condition)})"
        for condition in (pod.get("status") or {}).get("conditions") or []
        if condition.get("status") != "True"
        and (condition.get("reason") or condition.get("message"))
    ]


def readiness_reason(kube: NamespacedApi, pod_name: str, port: int) -> list[str]:
    """The predictor's own answer to ``GET /readyz`` (why it refuses to serve, e.g. parity).

    Read through the API server's pod proxy (the Role's ``pods/proxy`` get), with the switch's
    request timeout.
    """
    try:
        answer = kube.pod_get(pod_name, port, "readyz")
    except ApiException as exc:
        return [readyz_refusal(exc)]
    except API_ERRORS as exc:
        return [f"predictor /readyz not reachable ({short(api_reason(exc), 160)})"]
    if answer.get("ready") is True:
        return ["predictor /readyz now answers ready"]
    return [f"predictor /readyz: {short(answer)}"]


def readyz_refusal(exc: ApiException) -> str:
    """The predictor's reason from a 503 ``/readyz`` answer, or why none could be read."""
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    if isinstance(body, dict) and body.get("ready") is False:
        return f"predictor /readyz: {short(body.get('reason') or 'no reason given')}"
    return f"predictor /readyz not reachable ({short(api_reason(exc), 160)})"


def warning_events(kube: NamespacedApi, pod_name: str, keep: int = 3) -> list[str]:
    try:
        events = kube.items(
            kube.apis.core.list_namespaced_event,
            field_selector=f"involvedObject.kind=Pod,involvedObject.name={pod_name}",
        )
    except API_ERRORS as exc:
        return [f"events could not be read ({api_reason(exc)})"]
    return last_warnings(events, keep)


def last_warnings(events: Iterable[Obj], keep: int = 3) -> list[str]:
    """The ``keep`` latest Warning events, oldest first, with their repeat counts."""
    warnings = sorted((e for e in events if e.get("type") == "Warning"), key=_event_time)
    return [
        f"event {e.get('reason')}: {short(e.get('message', ''))}"
        + (f" (x{e['count']})" if (e.get("count") or 1) > 1 else "")
        for e in warnings[-keep:]
    ]


def _event_time(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )
