"""Namespaced access to the Kubernetes API, with objects as plain dicts.

The rollout account holds only the predictor namespace's Role, so every call here is namespaced.
Objects travel as the API's own JSON (its field names, not the client's models), so recorded
API objects and the objects of a live server read alike. Waits are watches on the API's own
conditions, resumed from the last resourceVersion, re-listed when the server answers 410 Gone,
and bounded by a timeout whose message says what was awaited and what was last seen.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from edgecast.deploy.endpoints import AppsApi, CoreApi, DiscoveryApi

Obj = dict[str, Any]
# Objects of one kind by name, as a list or a watch last showed them.
Objects = dict[str, Obj]

# Errors an API call can end with: the server's answer, the transport, a body that is not JSON.
API_ERRORS: tuple[type[BaseException], ...] = (
    ApiException,
    urllib3.exceptions.HTTPError,
    OSError,
    ValueError,
)


class CheckFailed(RuntimeError):
    """The cluster is in a state a step cannot go on from; the message is the whole reason."""


class WatchTimeout(CheckFailed):
    """A watched condition did not hold within its timeout."""


@dataclass(frozen=True)
class KubeApis:
    """The API groups the switch talks to; tests build it on a client aimed at a fake server."""

    core: CoreApi
    apps: AppsApi
    discovery: DiscoveryApi

    @classmethod
    def from_api_client(cls, api_client: client.ApiClient) -> KubeApis:
        return cls(
            core=CoreApi(api_client),
            apps=AppsApi(api_client),
            discovery=DiscoveryApi(api_client),
        )

    def close(self) -> None:
        self.core.api_client.close()


class KubeConfigError(ValueError):
    """No client could be configured; the message says from what and why."""


def connect(kubeconfig: str | None = None, context: str | None = None) -> KubeApis:
    """Clients found as kubernetes.core finds them: from ``kubeconfig`` (else the file in
    ``K8S_AUTH_KUBECONFIG``) and ``context``; without either, the pod's service account when
    running in a cluster, else the default kubeconfig (``KUBECONFIG``, else ``~/.kube/config``)."""
    kubeconfig = kubeconfig or os.environ.get("K8S_AUTH_KUBECONFIG") or None
    try:
        if kubeconfig or context:
            api_client = config.new_client_from_config(
                config_file=kubeconfig, context=context, persist_config=False
            )
        else:
            api_client = _in_cluster_or_default()
    except (config.ConfigException, OSError, ValueError) as exc:
        where = kubeconfig or "the in-cluster service account or the default kubeconfig"
        raise KubeConfigError(
            f"cannot configure the Kubernetes client from {where}: {exc}"
        ) from exc
    return KubeApis.from_api_client(api_client)


def _in_cluster_or_default() -> client.ApiClient:
    try:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        return config.new_client_from_config(persist_config=False)
    return client.ApiClient(configuration)


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
    if isinstance(exc, CheckFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def short(text: object, limit: int = 240) -> str:
    """``text`` on one line, cut to ``limit`` characters, so a task's message stays readable."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def condition_reason(condition: Mapping[str, Any]) -> str:
    """A status condition's reason, and its message when it has one."""
    reason = condition.get("reason") or "no reason"
    message = condition.get("message")
    return f"{reason}: {short(message)}" if message else str(reason)


class NamespacedApi:
    """Reads, writes and watches in one namespace, each bounded by the request timeout."""

    def __init__(self, apis: KubeApis, namespace: str, request_timeout: float) -> None:
        self.apis = apis
        self.namespace = namespace
        self.request_timeout = request_timeout

    def raw(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        """The body the API answers, as it came."""
        response = method(
            *args,
            namespace=self.namespace,
            _preload_content=False,
            _request_timeout=self.request_timeout,
            **kwargs,
        )
        try:
            return response.data
        finally:
            response.release_conn()

    def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        """The JSON object the API answers, without the client's models."""
        data = self.raw(method, *args, **kwargs)
        payload = json.loads(data) if data else {}
        if not isinstance(payload, dict):
            raise ValueError(f"expected a JSON object from the API, got {short(payload, 80)}")
        return payload

    def get_or_none(self, method: Callable[..., Any], name: str) -> Obj | None:
        try:
            return self.call(method, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pod_get(self, pod: str, port: int, path: str) -> Obj:
        """``GET /path`` on a pod's ``port``, through the API server's pod proxy (the Role's
        ``pods/proxy`` get): no network path to the pod is needed."""
        method = self.apis.core.connect_get_namespaced_pod_proxy_with_path
        return self.call(method, f"{pod}:{port}", path=path)

    def service_get(self, service: str, port: str, path: str) -> Obj:
        """``GET /path`` on a Service's named ``port``, through the API server's service proxy."""
        method = self.apis.core.connect_get_namespaced_service_proxy_with_path
        return self.call(method, f"{service}:{port}", path=path)

    def service_text(self, service: str, port: str, path: str) -> str:
        """``GET /path`` on a Service's named ``port`` (a body that is not JSON, as /metrics)."""
        method = self.apis.core.connect_get_namespaced_service_proxy_with_path
        return self.raw(method, f"{service}:{port}", path=path).decode()

    def items(self, method: Callable[..., Any], **selectors: str) -> list[Obj]:
        return list(self.call(method, **selectors).get("items") or [])

    def delete(self, method: Callable[..., Any], name: str, propagation_policy: str) -> None:
        """Delete ``name``; one already gone is as good as deleted."""
        try:
            self.call(method, name, propagation_policy=propagation_policy)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def watch_until(
        self,
        list_method: Callable[..., Any],
        *,
        check: Callable[[Objects], bool],
        timeout: float,
        on_timeout: Callable[[Objects], str],
        **selectors: str,
    ) -> Objects:
        """List, then watch from the list's resourceVersion until ``check`` holds on the objects.

        ``check`` may raise to stop early. A watch that ends (server timeout) resumes from the
        last resourceVersion seen, BOOKMARKs included; 410 Gone (expired resourceVersion) starts
        over with a fresh list. On timeout raises :class:`WatchTimeout` with ``on_timeout``'s
        text.
        """
        deadline = time.monotonic() + timeout
        objects: Objects = {}
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
                raise WatchTimeout(on_timeout(objects))
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
