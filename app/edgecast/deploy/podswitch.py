"""Pod switching: move a node's predictor Service to a new model's pod without losing a request.

The new model gets its own Deployment beside the serving one. Only when that Deployment is
available and its pod answers with the expected ``model_id`` through the API server does the
node's Service change its selector. The old pod keeps serving until the Service's EndpointSlices
list the new pod alone and the Service itself answers with the new model; it is removed after a
drain delay. A failure before the switch deletes the new Deployment; a failure after it puts the
selector back first. Either way the old model keeps serving and the error names the reason.

Everything here is namespaced: the rollout account needs only the predictor namespace's Role
(deployments; services without delete; pods, pods/proxy and services/proxy; EndpointSlices and
events read-only) and never a cluster-scoped call. Objects travel as plain dicts with the API's
own field names. Waits are watches on the API's own conditions, resumed from the last
resourceVersion, re-listed when the server answers 410 Gone, and bounded by a timeout whose
message says what was awaited and what was last seen.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import Backoff, retry_on_conflict

from edgecast.deploy.manifests import (
    APP_NAME,
    MODEL_ID_ANNOTATION,
    MODEL_LABEL,
    NODE_LABEL,
    PredictorNames,
    PredictorSpec,
    model_label,
    names_for,
    render,
)

Obj = dict[str, Any]

PREVIOUS_MODEL_ANNOTATION = "edgecast.io/previous-model-id"
NODE_ANNOTATION = "edgecast.io/node"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
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

# Errors an API call can end with: the server's answer, the transport, a body that is not JSON
# or does not fit the client's models.
API_ERRORS: tuple[type[BaseException], ...] = (
    ApiException,
    urllib3.exceptions.HTTPError,
    OSError,
    ValueError,
)
# The API server's service proxy resolves endpoints from its own view of the Service, which no
# watchable object exposes; its answers are re-asked at this interval until the verify timeout.
_SERVICE_RETRY_SECONDS = 0.2


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
class KubeApis:
    """The API groups the switch talks to; tests build it on a client aimed at a fake server."""

    core: client.CoreV1Api
    apps: client.AppsV1Api
    discovery: client.DiscoveryV1Api

    @classmethod
    def from_api_client(cls, api_client: client.ApiClient) -> KubeApis:
        return cls(
            core=client.CoreV1Api(api_client),
            apps=client.AppsV1Api(api_client),
            discovery=client.DiscoveryV1Api(api_client),
        )

    def close(self) -> None:
        self.core.api_client.close()


def connect(kubeconfig: str | None = None, context: str | None = None) -> KubeApis:
    """Clients from a kubeconfig file (and context), or from the pod's service account."""
    if kubeconfig:
        api_client = config.new_client_from_config(
            config_file=kubeconfig, context=context, persist_config=False
        )
    elif context:
        raise ValueError(f"context {context!r} needs a kubeconfig file to choose it from")
    else:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        api_client = client.ApiClient(configuration)
    return KubeApis.from_api_client(api_client)


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for each condition; ``cleanup`` defaults to the pods' grace period + 30."""

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


@dataclass(frozen=True)
class SwitchPlan:
    """What :func:`pod_switch` would do, found with reads only (check mode)."""

    changed: bool
    model_id: str
    previous_model_id: str | None
    actions: tuple[str, ...]


@dataclass(frozen=True)
class ServingModel:
    """The model a node's Service selects, and the one it selected before."""

    node: str
    service: str
    model_id: str | None
    previous_model_id: str | None
    deployment: str | None


def api_reason(exc: BaseException) -> str:
    """A one-line reason for a failed call, with the API's own Status message when there is one."""
    if isinstance(exc, ApiException):
        message = ""
        try:
            body = json.loads(exc.body or "{}")
            message = str(body.get("message") or "") if isinstance(body, dict) else ""
        except ValueError:
            message = (exc.body or "").strip()[:300]
        head = f"{exc.status} {exc.reason or ''}".strip() if exc.status else str(exc.reason)
        return f"{head}: {message}" if message else head
    if isinstance(exc, PodSwitchError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


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
            parts.append(f"{kind}={condition.get('status')} ({_condition_reason(condition)})")
        else:
            parts.append(f"{kind} condition absent")
    return done, ", ".join(parts)


_REPLICA_FIELDS = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")


def _condition_reason(condition: Mapping[str, Any]) -> str:
    reason = condition.get("reason") or "no reason"
    message = condition.get("message")
    return f"{reason}: {_short(message)}" if message else str(reason)


def _short(text: object, limit: int = 240) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


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
            return f"{path}: {_short(have, 80)} != {_short(want, 80)}"
        for index, (got, value) in enumerate(zip(have, want, strict=True)):
            found = first_difference(got, value, f"{path}[{index}]")
            if found:
                return found
        return None
    if have != want:
        return f"{path}: {_short(repr(have), 80)} != {_short(repr(want), 80)}"
    return None


def _wanted_deployment_fields(deployment: Obj) -> Obj:
    """The parts of a rendered Deployment that must match a live one for it to be reused."""
    metadata = deployment["metadata"]
    return {
        "metadata": {
            "labels": metadata.get("labels") or {},
            "annotations": metadata.get("annotations") or {},
        },
        "spec": deployment["spec"],
    }


def _is_ready_pod(pod: Obj) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@dataclass
class _NodeState:
    """The node's Service and predictor Deployments, as read at one moment."""

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
        return ((self.service.get("metadata") or {}).get("annotations") or {}).get(key)

    def selected_deployment(self) -> Obj | None:
        label = self.selected_label
        for deployment in self.deployments.values():
            if ((deployment.get("metadata") or {}).get("labels") or {}).get(MODEL_LABEL) == label:
                return deployment
        return None

    def selected_model_id(self) -> str | None:
        """The model the Service selects: from its Deployment, its annotation, else the label."""
        label = self.selected_label
        if label is None:
            return None
        deployment = self.selected_deployment()
        if deployment is not None:
            found = ((deployment.get("metadata") or {}).get("annotations") or {}).get(
                MODEL_ID_ANNOTATION
            )
            if found:
                return str(found)
        annotated = self.annotation(MODEL_ID_ANNOTATION)
        if annotated and model_label(annotated) == label:
            return annotated
        return label


class _Cluster:
    """Namespaced reads, writes and watches, with objects as dicts."""

    def __init__(self, apis: KubeApis, namespace: str, request_timeout: float) -> None:
        self.apis = apis
        self.namespace = namespace
        self.request_timeout = request_timeout

    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        response = method(
            *args,
            namespace=self.namespace,
            _preload_content=False,
            _request_timeout=self.request_timeout,
            **kwargs,
        )
        try:
            data = response.data
        finally:
            response.release_conn()
        payload = json.loads(data) if data else {}
        if not isinstance(payload, dict):
            raise ValueError(f"expected a JSON object from the API, got {_short(payload, 80)}")
        return payload

    def get_or_none(self, method: Callable[..., Any], name: str) -> Obj | None:
        try:
            return self.call(method, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def items(self, method: Callable[..., Any], **selectors: str) -> list[Obj]:
        return list(self.call(method, **selectors).get("items") or [])

    def node_state(self, names: PredictorNames) -> _NodeState:
        service = self.get_or_none(self.apis.core.read_namespaced_service, names.service)
        deployments = self.items(
            self.apis.apps.list_namespaced_deployment,
            label_selector=label_selector(_node_labels(names)),
        )
        return _NodeState(service, {d["metadata"]["name"]: d for d in deployments})

    def watch_until(
        self,
        list_method: Callable[..., Any],
        *,
        check: Callable[[dict[str, Obj]], bool],
        timeout: float,
        on_timeout: Callable[[dict[str, Obj]], str],
        **selectors: str,
    ) -> dict[str, Obj]:
        """List, then watch from the list's resourceVersion until ``check`` holds on the objects.

        ``check`` may raise to stop early. A watch that ends (server timeout) resumes from the
        last resourceVersion seen, BOOKMARKs included; 410 Gone (expired resourceVersion) starts
        over with a fresh list. On timeout raises :class:`PodSwitchError` with ``on_timeout``'s
        text.
        """
        deadline = time.monotonic() + timeout
        objects: dict[str, Obj] = {}
        resource_version: str | None = None
        while True:
            if resource_version is None:
                listing = self.call(list_method, **selectors)
                objects = {o["metadata"]["name"]: o for o in listing.get("items") or []}
                resource_version = str(listing["metadata"]["resourceVersion"])
                if check(objects):
                    return objects
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PodSwitchError(on_timeout(objects))
            # Events carry plain dicts (return type "object"), with the API's own field names.
            watcher = watch.Watch(return_type="object")
            stream = watcher.stream(
                list_method,
                namespace=self.namespace,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=max(1, math.ceil(remaining)),
                _request_timeout=(
                    self.request_timeout,
                    math.ceil(remaining) + self.request_timeout,
                ),
                **selectors,
            )
            try:
                for event in stream:
                    kind = event["type"]
                    obj = event["raw_object"]
                    metadata = obj.get("metadata") or {}
                    resource_version = str(metadata.get("resourceVersion") or resource_version)
                    if kind in ("ADDED", "MODIFIED"):
                        objects[metadata["name"]] = obj
                    elif kind == "DELETED":
                        objects.pop(metadata["name"], None)
                    else:
                        continue
                    if check(objects):
                        return objects
                    if time.monotonic() >= deadline:
                        break
            except ApiException as exc:
                if exc.status != 410:
                    raise
                resource_version = None
            finally:
                watcher.stop()
                stream.close()


def _node_labels(names: PredictorNames) -> dict[str, str]:
    return {"app.kubernetes.io/name": APP_NAME, NODE_LABEL: names.labels[NODE_LABEL]}


class _PodSwitch:
    def __init__(
        self,
        apis: KubeApis,
        spec: PredictorSpec,
        timeouts: Timeouts,
        conflict_retries: int,
        service_checks: int,
    ) -> None:
        self.spec = spec
        self.rendered = render(spec)
        self.names = names_for(spec.node, spec.model_id)
        self.timeouts = timeouts
        self.conflict_retries = max(0, conflict_retries)
        self.service_checks = max(1, service_checks)
        self.cluster = _Cluster(apis, spec.namespace, timeouts.request)
        self.apis = apis
        self.phases: dict[str, float] = {}
        self.phase = ""
        self.started = time.monotonic()

    @property
    def namespace(self) -> str:
        return self.spec.namespace

    @property
    def model_label(self) -> str:
        return self.names.selector[MODEL_LABEL]

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        self.phase = phase
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases[phase] = time.monotonic() - start

    def finish_phases(self) -> dict[str, float]:
        self.phases["total"] = time.monotonic() - self.started
        return {key: round(value, 3) for key, value in self.phases.items()}

    # -- the switch -------------------------------------------------------------------------

    def run(self, drain_seconds: float) -> SwitchResult:
        try:
            before = self.cluster.node_state(self.names)
        except API_ERRORS as exc:
            raise PodSwitchError(
                f"reading the Service and Deployments of node {self.spec.node} in namespace "
                f"{self.namespace} failed: {api_reason(exc)}",
                phase="read",
                phases=self.finish_phases(),
            ) from exc
        serving_new = before.selected_label == self.model_label
        previous = (
            before.annotation(PREVIOUS_MODEL_ANNOTATION)
            if serving_new
            else before.selected_model_id()
        )
        existing = before.deployments.get(self.names.deployment)
        leftovers = [name for name in before.deployments if name != self.names.deployment]
        if serving_new and existing is not None and not leftovers:
            done, _ = deployment_progress(existing)
            if done and self.deployment_difference(existing) is None:
                return self.result(False, previous)
        try:
            with self.timed("create"):
                self.ensure_deployment(existing, serving_new)
            with self.timed("ready"):
                self.wait_available()
            with self.timed("verify_pod"):
                pods = self.verify_pods()
        except (PodSwitchError, *API_ERRORS) as exc:
            self.fail_before_switch(exc, before, serving_new)
        try:
            with self.timed("switch"):
                self.switch_service(before, previous)
            with self.timed("endpoints"):
                self.wait_endpoints(pods)
            with self.timed("verify_service"):
                self.verify_service()
        except (PodSwitchError, *API_ERRORS) as exc:
            self.fail_after_switch(exc, before, serving_new)
        with self.timed("drain"):
            # kube-proxy on every node, and clients holding connections, may still reach the old
            # pod for a moment after the EndpointSlices changed; no API object reports when they
            # are done, so the old pod stays up for a fixed delay.
            if not serving_new and before.service is not None and leftovers:
                time.sleep(max(0.0, drain_seconds))
        with self.timed("cleanup"):
            removed, warnings = self.remove_old_deployments()
        return self.result(True, previous, removed, warnings)

    def result(
        self,
        changed: bool,
        previous: str | None,
        removed: tuple[str, ...] = (),
        warnings: tuple[str, ...] = (),
    ) -> SwitchResult:
        return SwitchResult(
            changed=changed,
            model_id=self.spec.model_id,
            previous_model_id=previous,
            deployment=self.names.deployment,
            service=self.names.service,
            removed_deployments=removed,
            phases=self.finish_phases(),
            warnings=warnings,
        )

    # -- before the switch -------------------------------------------------------------------

    def deployment_difference(self, live: Obj) -> str | None:
        return first_difference(live, _wanted_deployment_fields(self.rendered["deployment"]))

    def ensure_deployment(self, existing: Obj | None, serving_new: bool) -> None:
        """Create the new model's Deployment, or reuse (or correct) one left by an earlier run."""
        apps = self.apis.apps
        name = self.names.deployment
        if existing is not None and (existing.get("metadata") or {}).get("deletionTimestamp"):
            self.wait_deployment_gone(name, self.timeouts.ready)
            existing = None
        if existing is None:
            try:
                self.cluster.call(
                    apps.create_namespaced_deployment,
                    body=copy.deepcopy(self.rendered["deployment"]),
                )
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise
                existing = self.cluster.call(apps.read_namespaced_deployment, name)
        difference = self.deployment_difference(existing)
        if difference is None:
            return
        if serving_new:
            raise PodSwitchError(
                f"Deployment {self.namespace}/{name} serves model {self.spec.model_id} but differs "
                f"from the spec ({difference}); a switch keys Deployments by model_id, so roll "
                "out a new model_id, or switch to another model first and then back"
            )
        wanted = _wanted_deployment_fields(self.rendered["deployment"])
        self.cluster.call(
            apps.patch_namespaced_deployment,
            name,
            body=wanted,
            _content_type="application/merge-patch+json",
        )

    def wait_deployment_gone(self, name: str, timeout: float) -> None:
        def check(objects: dict[str, Obj]) -> bool:
            return name not in objects

        def on_timeout(objects: dict[str, Obj]) -> str:
            return (
                f"Deployment {self.namespace}/{name} was still being deleted after {timeout:g}s "
                "(waited for it to disappear before creating it again)"
            )

        self.cluster.watch_until(
            self.apis.apps.list_namespaced_deployment,
            check=check,
            timeout=timeout,
            on_timeout=on_timeout,
            field_selector=f"metadata.name={name}",
        )

    def wait_available(self) -> None:
        name = self.names.deployment
        timeout = self.timeouts.ready

        def check(objects: dict[str, Obj]) -> bool:
            deployment = objects.get(name)
            if deployment is None:
                raise PodSwitchError(
                    f"Deployment {self.namespace}/{name} was deleted while starting"
                )
            conditions = (deployment.get("status") or {}).get("conditions") or []
            for condition in conditions:
                if (
                    condition.get("type") == "Progressing"
                    and condition.get("status") == "False"
                    and condition.get("reason") == "ProgressDeadlineExceeded"
                ):
                    raise PodSwitchError(
                        f"Deployment {self.namespace}/{name} exceeded its progress deadline "
                        f"({_condition_reason(condition)}); {self.describe_pods()}"
                    )
            return deployment_progress(deployment)[0]

        def on_timeout(objects: dict[str, Obj]) -> str:
            deployment = objects.get(name)
            last = deployment_progress(deployment)[1] if deployment else "not found"
            replicas = (deployment or {}).get("spec", {}).get("replicas", 1)
            return (
                f"Deployment {self.namespace}/{name} was not available within {timeout:g}s "
                "(waited for status.observedGeneration >= metadata.generation, "
                f"replicas, updatedReplicas, readyReplicas and availableReplicas == {replicas} "
                f"and condition Available=True); last status: {last}; {self.describe_pods()}"
            )

        self.cluster.watch_until(
            self.apis.apps.list_namespaced_deployment,
            check=check,
            timeout=timeout,
            on_timeout=on_timeout,
            field_selector=f"metadata.name={name}",
        )

    def describe_pods(self) -> str:
        """Why the new pods are not ready, from their status and Warning events."""
        try:
            pods = self.cluster.items(
                self.apis.core.list_namespaced_pod,
                label_selector=label_selector(self.names.selector),
            )
        except API_ERRORS as exc:
            return f"pods could not be read ({api_reason(exc)})"
        if not pods:
            return "no pod exists for the Deployment's selector (see the Deployment's events)"
        return "; ".join(self.describe_pod(pod) for pod in pods)

    def describe_pod(self, pod: Obj) -> str:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        parts = [f"pod {name}: phase {status.get('phase', 'unknown')}"]
        if pod["metadata"].get("deletionTimestamp"):
            parts.append("terminating")
        statuses = (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []
        )
        for container in statuses:
            parts.extend(_describe_container(container))
        if status.get("phase") == "Running" and not _is_ready_pod(pod):
            parts.extend(self.readiness_reason(name))
        for condition in status.get("conditions") or []:
            if condition.get("status") != "True" and (
                condition.get("reason") or condition.get("message")
            ):
                parts.append(f"{condition.get('type')}=False ({_condition_reason(condition)})")
        parts.extend(self.warning_events(name))
        return ", ".join(parts)

    def readiness_reason(self, pod_name: str) -> list[str]:
        """The predictor's own answer to ``GET /readyz`` (why it refuses to serve, e.g. parity).

        Read through the API server's pod proxy (the Role's ``pods/proxy`` get), with the
        switch's request timeout: this only explains a failure, so any error here is reported,
        never raised.
        """
        try:
            answer = self.cluster.call(
                self.apis.core.connect_get_namespaced_pod_proxy_with_path,
                f"{pod_name}:{self.spec.port}",
                path="readyz",
            )
        except ApiException as exc:
            try:
                body = json.loads(exc.body or "{}")
            except ValueError:
                body = {}
            if isinstance(body, dict) and body.get("ready") is False:
                return [f"predictor /readyz: {_short(body.get('reason') or 'no reason given')}"]
            return [f"predictor /readyz not reachable ({_short(api_reason(exc), 160)})"]
        except (*API_ERRORS, ValueError) as exc:
            return [f"predictor /readyz not reachable ({_short(api_reason(exc), 160)})"]
        if answer.get("ready") is True:
            return ["predictor /readyz now answers ready"]
        return [f"predictor /readyz: {_short(answer)}"]

    def warning_events(self, pod_name: str, keep: int = 3) -> list[str]:
        try:
            events = self.cluster.items(
                self.apis.core.list_namespaced_event,
                field_selector=f"involvedObject.kind=Pod,involvedObject.name={pod_name}",
            )
        except API_ERRORS as exc:
            return [f"events could not be read ({api_reason(exc)})"]
        warnings = [e for e in events if e.get("type") == "Warning"]
        warnings.sort(key=_event_time)
        return [
            f"event {e.get('reason')}: {_short(e.get('message', ''))}"
            + (f" (x{e['count']})" if (e.get("count") or 1) > 1 else "")
            for e in warnings[-keep:]
        ]

    def verify_pods(self) -> dict[str, str]:
        """Ask every ready new pod, through the API server, which model it serves."""
        pods = [
            pod
            for pod in self.cluster.items(
                self.apis.core.list_namespaced_pod,
                label_selector=label_selector(self.names.selector),
            )
            if _is_ready_pod(pod)
        ]
        if not pods:
            raise PodSwitchError(
                f"Deployment {self.namespace}/{self.names.deployment} reports available but no pod "
                "of its selector is Ready"
            )
        found: dict[str, str] = {}
        for pod in pods:
            name = pod["metadata"]["name"]
            try:
                answer = self.cluster.call(
                    self.apis.core.connect_get_namespaced_pod_proxy_with_path,
                    f"{name}:{self.spec.port}",
                    path="v1/model",
                )
            except API_ERRORS as exc:
                raise PodSwitchError(
                    f"pod {self.namespace}/{name} did not answer GET /v1/model through the API "
                    f"server's pod proxy: {api_reason(exc)}"
                ) from exc
            served = answer.get("model_id")
            if served != self.spec.model_id:
                raise PodSwitchError(
                    f"pod {self.namespace}/{name} answers GET /v1/model with model_id {served!r}, "
                    f"expected {self.spec.model_id!r}"
                )
            found[name] = str((pod.get("status") or {}).get("podIP") or "")
        return found

    def fail_before_switch(
        self, exc: BaseException, before: _NodeState, serving_new: bool
    ) -> NoReturn:
        phase = self.phase
        done: list[str] = []
        if not serving_new:
            done.append(self.delete_new_deployment())
            if before.service is None:
                done.append(f"no Service {self.names.service} was created")
            else:
                done.append(
                    f"Service {self.names.service} unchanged, still selecting model "
                    f"{before.selected_model_id()}"
                )
        raise PodSwitchError(
            self.failure_text(phase, exc, done),
            phase=phase,
            reverted=not serving_new,
            phases=self.finish_phases(),
        ) from exc

    # -- the switch and after ----------------------------------------------------------------

    def conflict_backoff(self) -> Backoff:
        return Backoff(
            steps=self.conflict_retries + 1, duration=0.05, factor=2.0, jitter=0.1, cap=1.0
        )

    def switch_service(self, before: _NodeState, previous: str | None) -> None:
        """Point the Service at the new model (or create it), retrying 409 Conflicts."""
        core = self.apis.core
        attempts = 0

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            service = self.cluster.get_or_none(core.read_namespaced_service, self.names.service)
            annotations = {MODEL_ID_ANNOTATION: self.spec.model_id}
            if previous and previous != self.spec.model_id:
                annotations[PREVIOUS_MODEL_ANNOTATION] = previous
            if service is None:
                body = copy.deepcopy(self.rendered["service"])
                body["metadata"].setdefault("annotations", {}).update(annotations)
                self.cluster.call(core.create_namespaced_service, body=body)
                return
            patch = _selector_patch(service, self.names.selector, annotations)
            if patch is not None:
                self.cluster.call(
                    core.patch_namespaced_service,
                    self.names.service,
                    body=patch,
                    _content_type="application/merge-patch+json",
                )

        try:
            retry_on_conflict(attempt, backoff=self.conflict_backoff())
        except ApiException as exc:
            if exc.status != 409:
                raise
            raise PodSwitchError(
                f"Service {self.namespace}/{self.names.service} changed under every one of "
                f"{attempts} attempts (409 Conflict on metadata.resourceVersion): "
                f"{api_reason(exc)}"
            ) from exc

    def wait_endpoints(self, pods: dict[str, str]) -> None:
        service = self.names.service
        timeout = self.timeouts.endpoints
        ips = {ip for ip in pods.values() if ip}

        def belongs(endpoint: Mapping[str, Any]) -> bool:
            target = endpoint.get("targetRef") or {}
            if target:
                return target.get("kind") == "Pod" and target.get("name") in pods
            return bool(ips.intersection(endpoint.get("addresses") or []))

        def check(slices: dict[str, Obj]) -> bool:
            endpoints = [e for s in slices.values() for e in s.get("endpoints") or []]
            return bool(endpoints) and all(
                belongs(e) and (e.get("conditions") or {}).get("ready") is not False
                for e in endpoints
            )

        def on_timeout(slices: dict[str, Obj]) -> str:
            return (
                f"the EndpointSlices of Service {self.namespace}/{service} did not converge within "
                f"{timeout:g}s (waited for ready endpoints of the new pods "
                f"{', '.join(sorted(pods))} only, at least one); last endpoints: "
                f"{_describe_slices(slices)}"
            )

        self.cluster.watch_until(
            self.apis.discovery.list_namespaced_endpoint_slice,
            check=check,
            timeout=timeout,
            on_timeout=on_timeout,
            label_selector=f"{SERVICE_NAME_LABEL}={service}",
        )

    def verify_service(self) -> None:
        """The Service, through the API server's proxy, answers with the new model."""
        timeout = self.timeouts.verify
        deadline = time.monotonic() + timeout
        in_a_row = 0
        last = "no answer"
        while True:
            try:
                answer = self.cluster.call(
                    self.apis.core.connect_get_namespaced_service_proxy_with_path,
                    f"{self.names.service}:http",
                    path="v1/model",
                )
                served = answer.get("model_id")
                last = f"model_id {served!r}"
            except API_ERRORS as exc:
                served = None
                last = api_reason(exc)
            in_a_row = in_a_row + 1 if served == self.spec.model_id else 0
            if in_a_row >= self.service_checks:
                return
            if time.monotonic() >= deadline:
                raise PodSwitchError(
                    f"Service {self.namespace}/{self.names.service} did not answer GET /v1/model "
                    f"with model_id {self.spec.model_id!r} {self.service_checks} times in a row "
                    f"within {timeout:g}s; last answer: {last}"
                )
            if in_a_row == 0:
                time.sleep(_SERVICE_RETRY_SECONDS)

    def fail_after_switch(
        self, exc: BaseException, before: _NodeState, serving_new: bool
    ) -> NoReturn:
        phase = self.phase
        done: list[str] = []
        if not serving_new:
            done.append(self.revert_service(before))
            done.append(self.delete_new_deployment())
        raise PodSwitchError(
            self.failure_text(phase, exc, done),
            phase=phase,
            reverted=not serving_new,
            phases=self.finish_phases(),
        ) from exc

    def revert_service(self, before: _NodeState) -> str:
        core = self.apis.core
        service_name = self.names.service
        if before.service is None:
            return (
                f"Service {service_name} was created by this switch and is left without "
                "endpoints (the rollout Role cannot delete Services)"
            )
        old_selector = before.selector
        old_annotations = {
            MODEL_ID_ANNOTATION: before.annotation(MODEL_ID_ANNOTATION),
            PREVIOUS_MODEL_ANNOTATION: before.annotation(PREVIOUS_MODEL_ANNOTATION),
        }

        def attempt() -> None:
            service = self.cluster.get_or_none(core.read_namespaced_service, service_name)
            if service is None:
                return
            patch = _selector_patch(service, old_selector, old_annotations)
            if patch is not None:
                self.cluster.call(
                    core.patch_namespaced_service,
                    service_name,
                    body=patch,
                    _content_type="application/merge-patch+json",
                )

        try:
            retry_on_conflict(attempt, backoff=self.conflict_backoff())
        except API_ERRORS as exc:
            return (
                f"Service {service_name} could NOT be switched back to model "
                f"{before.selected_model_id()} ({api_reason(exc)}): set its selector to "
                f"{old_selector} by hand"
            )
        return f"Service {service_name} selects model {before.selected_model_id()} again"

    def delete_new_deployment(self) -> str:
        name = self.names.deployment
        try:
            self.cluster.call(
                self.apis.apps.delete_namespaced_deployment,
                name,
                propagation_policy="Background",
            )
        except ApiException as exc:
            if exc.status != 404:
                return f"Deployment {name} could NOT be deleted ({api_reason(exc)})"
        except API_ERRORS as exc:
            return f"Deployment {name} could NOT be deleted ({api_reason(exc)})"
        return f"Deployment {name} deleted"

    def failure_text(self, phase: str, exc: BaseException, done: list[str]) -> str:
        head = (
            f"switching node {self.spec.node} to model {self.spec.model_id} failed in phase "
            f"{phase}: {api_reason(exc)}"
        )
        return f"{head}. Rolled back: {'; '.join(done)}" if done else head

    def remove_old_deployments(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Delete the node's other predictor Deployments and wait (bounded) for their pods."""
        apps = self.apis.apps
        try:
            deployments = self.cluster.node_state(self.names).deployments
        except API_ERRORS as exc:
            return (), (f"the old Deployments could not be listed: {api_reason(exc)}",)
        olds = [name for name in deployments if name != self.names.deployment]
        warnings: list[str] = []
        removed: list[str] = []
        for name in olds:
            try:
                self.cluster.call(
                    apps.delete_namespaced_deployment, name, propagation_policy="Foreground"
                )
                removed.append(name)
            except ApiException as exc:
                if exc.status == 404:
                    removed.append(name)
                else:
                    warnings.append(f"Deployment {name} was not deleted: {api_reason(exc)}")
            except API_ERRORS as exc:
                warnings.append(f"Deployment {name} was not deleted: {api_reason(exc)}")
        if not removed:
            return (), tuple(warnings)
        timeout = (
            self.timeouts.cleanup
            if self.timeouts.cleanup is not None
            else self.spec.termination_grace_seconds + 30.0
        )

        def check(pods: dict[str, Obj]) -> bool:
            return not any(
                ((p.get("metadata") or {}).get("labels") or {}).get(MODEL_LABEL) != self.model_label
                for p in pods.values()
            )

        def on_timeout(pods: dict[str, Obj]) -> str:
            left = sorted(
                name
                for name, pod in pods.items()
                if ((pod.get("metadata") or {}).get("labels") or {}).get(MODEL_LABEL)
                != self.model_label
            )
            return (
                f"old predictor pods {', '.join(left)} were still present {timeout:g}s after "
                f"their Deployments were deleted (waited for no pod of node {self.spec.node} "
                f"but model {self.spec.model_id}'s)"
            )

        try:
            self.cluster.watch_until(
                self.apis.core.list_namespaced_pod,
                check=check,
                timeout=timeout,
                on_timeout=on_timeout,
                label_selector=label_selector(_node_labels(self.names)),
            )
        except (PodSwitchError, *API_ERRORS) as exc:
            warnings.append(api_reason(exc))
        return tuple(removed), tuple(warnings)


def _selector_patch(
    service: Obj, selector: Mapping[str, str], annotations: Mapping[str, str | None]
) -> Obj | None:
    """A merge patch replacing the Service's selector, guarded by its resourceVersion."""
    metadata = service.get("metadata") or {}
    current = dict((service.get("spec") or {}).get("selector") or {})
    current_annotations = metadata.get("annotations") or {}
    if current == dict(selector):
        return None
    changed_annotations = {
        key: value for key, value in annotations.items() if current_annotations.get(key) != value
    }
    selector_patch: dict[str, str | None] = {key: None for key in current if key not in selector}
    selector_patch.update(selector)
    patch: Obj = {
        "metadata": {"resourceVersion": metadata.get("resourceVersion")},
        "spec": {"selector": selector_patch},
    }
    if changed_annotations:
        patch["metadata"]["annotations"] = changed_annotations
    return patch


def _describe_container(container: Mapping[str, Any]) -> list[str]:
    name = container.get("name", "?")
    state = container.get("state") or {}
    parts: list[str] = []
    if "waiting" in state:
        waiting = state["waiting"] or {}
        text = f"container {name} waiting: {waiting.get('reason', 'unknown reason')}"
        if waiting.get("message"):
            text += f" ({_short(waiting['message'])})"
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


def _event_time(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _describe_slices(slices: Mapping[str, Obj]) -> str:
    described = []
    for endpoint in (e for s in slices.values() for e in s.get("endpoints") or []):
        target = (endpoint.get("targetRef") or {}).get("name") or ",".join(
            endpoint.get("addresses") or []
        )
        conditions = endpoint.get("conditions") or {}
        flags = ", ".join(f"{key}={value}" for key, value in sorted(conditions.items()))
        described.append(f"{target} ({flags or 'no conditions'})")
    return "; ".join(described) or "none"


def pod_switch(
    apis: KubeApis,
    spec: PredictorSpec,
    *,
    timeouts: Timeouts | None = None,
    drain_seconds: float = 5.0,
    conflict_retries: int = 5,
    service_checks: int = 3,
) -> SwitchResult:
    """Make the node's Service serve ``spec.model_id`` from a new pod, then remove the old pods.

    No change when the Service already selects the model, its Deployment is available with this
    spec and no other predictor Deployment of the node is left. Rolling back is the same call
    with the older model's spec (its bundle must be in the node's store). Raises
    :class:`PodSwitchError` with the reason, after leaving the old model serving. Old pods that
    outlive the cleanup timeout are reported in ``warnings``: the switch itself succeeded.
    """
    switch = _PodSwitch(apis, spec, timeouts or Timeouts(), conflict_retries, service_checks)
    return switch.run(drain_seconds)


def plan_switch(
    apis: KubeApis, spec: PredictorSpec, *, request_timeout: float = 30.0
) -> SwitchPlan:
    """What :func:`pod_switch` would change, with reads only."""
    names = names_for(spec.node, spec.model_id)
    rendered = render(spec)
    state = _Cluster(apis, spec.namespace, request_timeout).node_state(names)
    label = names.selector[MODEL_LABEL]
    existing = state.deployments.get(names.deployment)
    leftovers = sorted(name for name in state.deployments if name != names.deployment)
    serving_new = state.selected_label == label
    previous = (
        state.annotation(PREVIOUS_MODEL_ANNOTATION) if serving_new else state.selected_model_id()
    )
    actions: list[str] = []
    if existing is None:
        actions.append(f"create Deployment {names.deployment}")
    else:
        difference = first_difference(existing, _wanted_deployment_fields(rendered["deployment"]))
        if difference is not None:
            actions.append(f"update Deployment {names.deployment} ({difference})")
        elif not deployment_progress(existing)[0]:
            actions.append(f"wait for Deployment {names.deployment} to be available")
    if state.service is None:
        actions.append(f"create Service {names.service} selecting model {spec.model_id}")
    elif not serving_new:
        actions.append(
            f"switch Service {names.service} from model {previous} to model {spec.model_id}"
        )
    actions.extend(f"delete Deployment {name}" for name in leftovers)
    return SwitchPlan(
        changed=bool(actions),
        model_id=spec.model_id,
        previous_model_id=previous,
        actions=tuple(actions),
    )


def serving_models(
    apis: KubeApis, namespace: str, *, request_timeout: float = 30.0
) -> dict[str, ServingModel]:
    """Which model each node's predictor Service selects, keyed by node name."""
    cluster = _Cluster(apis, namespace, request_timeout)
    app = f"app.kubernetes.io/name={APP_NAME}"
    services = cluster.items(apis.core.list_namespaced_service, label_selector=app)
    deployments = cluster.items(apis.apps.list_namespaced_deployment, label_selector=app)
    found: dict[str, ServingModel] = {}
    for service in services:
        metadata = service.get("metadata") or {}
        node_key = (metadata.get("labels") or {}).get(NODE_LABEL)
        node = (metadata.get("annotations") or {}).get(NODE_ANNOTATION) or node_key
        if not node:
            continue
        own = {
            d["metadata"]["name"]: d
            for d in deployments
            if ((d.get("metadata") or {}).get("labels") or {}).get(NODE_LABEL) == node_key
        }
        state = _NodeState(service, own)
        selected = state.selected_deployment()
        found[node] = ServingModel(
            node=node,
            service=metadata.get("name", ""),
            model_id=state.selected_model_id(),
            previous_model_id=state.annotation(PREVIOUS_MODEL_ANNOTATION),
            deployment=selected["metadata"]["name"] if selected else None,
        )
    return found
