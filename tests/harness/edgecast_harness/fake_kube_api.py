"""FakeKubernetesApi: a fake Kubernetes API server for the pod-switching tests. Not Kubernetes.

It serves, over real HTTP on 127.0.0.1, only the namespaced REST endpoints that the pod switch
(``edgecast.deploy``) calls, so the official ``kubernetes`` client runs its own code unchanged:
request serialization, JSON bodies and patch content types, ``?watch=true`` streams of JSON lines
(chunked), Status errors. What it imitates:

- the REST semantics the switch relies on: one global resourceVersion, list metadata, watch
  events ADDED/MODIFIED/DELETED/BOOKMARK/ERROR with label- and field-selector filtering (an
  object leaving a selector is DELETED for that watch), 410 Gone on an expired resourceVersion
  (on demand), 409 Conflict on a stale ``metadata.resourceVersion`` in a merge patch, 409
  AlreadyExists, 404 NotFound, server-side defaults on create;
- the rollout Role, its rules rendered from ``templates/k8s/rbac.yaml.j2`` as the
  predictor_deploy role renders them: anything outside its verbs or its namespace,
  cluster-scoped calls included, is 403 Forbidden with the API server's wording; a request
  without the bearer token is 401;
- the controllers: one pod per Deployment (Recreate on template change), Deployment status
  (observedGeneration, replica counts omitted when zero, Available/Progressing conditions), a
  kubelet whose pod becomes Ready after a delay, never, crash-loops or lacks its image (with the
  matching containerStatuses and Warning events), Foreground/Background/Orphan deletion, and the
  EndpointSlice controller;
- the proxies: ``pods/<pod>:<port>/proxy/...`` and ``services/<svc>:<port>/proxy/...`` answer
  ``/v1/model`` and ``/readyz`` as the predictor in the pod would.

Strategic merge patches are applied as JSON merge patches (the switch only patches maps), and
there are no ReplicaSet objects: pods name their owner, but nothing serves it.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from edgecast.deploy.manifests import MODEL_ID_ANNOTATION, render_rbac

Obj = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

# resource -> (group, version, kind)
RESOURCES: dict[str, tuple[str, str, str]] = {
    "deployments": ("apps", "v1", "Deployment"),
    "services": ("", "v1", "Service"),
    "pods": ("", "v1", "Pod"),
    "endpointslices": ("discovery.k8s.io", "v1", "EndpointSlice"),
    "events": ("", "v1", "Event"),
}

FIELD_LABELS: dict[str, frozenset[str]] = {
    "pods": frozenset({"spec.nodeName", "status.phase"}),
    "events": frozenset(
        {
            "involvedObject.kind",
            "involvedObject.name",
            "involvedObject.namespace",
            "involvedObject.uid",
            "reason",
            "type",
        }
    ),
}

STATUS_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}

OUTCOMES = ("ready", "never_ready", "crash_loop", "image_never_pull")


def rollout_role(namespace: str, rollout_service_account: str) -> dict[tuple[str, str], set[str]]:
    """The verbs the rollout Role grants, by (API group, resource), from the shipped template."""
    objects = render_rbac(namespace, "edgecast-predictor", rollout_service_account)
    (role,) = [obj for obj in objects if obj["kind"] == "Role"]
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_version(resource: str) -> str:
    group, version, _ = RESOURCES[resource]
    return f"{group}/{version}" if group else version


def qualified(resource: str) -> str:
    group = RESOURCES.get(resource, ("", "", ""))[0]
    return f"{resource}.{group}" if group else resource


class FakeApiError(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None, **details: Any):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or STATUS_REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


@dataclass
class FakePodBehaviour:
    """What the fake kubelet does with a pod of one model."""

    outcome: str = "ready"
    ready_after: float = 0.1
    # What the predictor's /readyz says while the pod is not ready (the real one's wording).
    not_ready_reason: str = "loading model"
    serves_model: str | None = None


@dataclass
class _Route:
    group: str
    version: str
    namespace: str | None
    resource: str
    name: str | None
    subresource: str | None
    rest: str

    @property
    def rbac_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass
class _Change:
    rv: int
    resource: str
    type: str
    obj: Obj
    before: Obj | None


@dataclass
class _Fault:
    method: str
    resource: str
    code: int
    times: int
    message: str | None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _labels(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _parse_label_selector(text: str) -> list[tuple[str, str, str | None]]:
    terms: list[tuple[str, str, str | None]] = []
    for raw in filter(None, (part.strip() for part in text.split(","))):
        if "!=" in raw:
            key, value = raw.split("!=", 1)
            terms.append(("!=", key.strip(), value.strip()))
        elif "==" in raw:
            key, value = raw.split("==", 1)
            terms.append(("=", key.strip(), value.strip()))
        elif "=" in raw:
            key, value = raw.split("=", 1)
            terms.append(("=", key.strip(), value.strip()))
        elif raw.startswith("!"):
            terms.append(("!", raw[1:].strip(), None))
        elif " " not in raw and "(" not in raw:
            terms.append(("exists", raw, None))
        else:
            raise FakeApiError(400, f"unable to parse requirement: {raw!r}")
    return terms


def _label_match(labels: dict[str, str], terms: list[tuple[str, str, str | None]]) -> bool:
    for op, key, value in terms:
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
        if op == "!" and key in labels:
            return False
        if op == "exists" and key not in labels:
            return False
    return True


def _dotted(obj: Obj, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


class _Selectors:
    def __init__(self, resource: str, query: dict[str, list[str]]) -> None:
        self.labels = _parse_label_selector(query.get("labelSelector", [""])[0])
        self.fields: list[tuple[str, str, str]] = []
        allowed = {"metadata.name", "metadata.namespace"} | FIELD_LABELS.get(resource, set())
        for raw in filter(None, query.get("fieldSelector", [""])[0].split(",")):
            op = "!=" if "!=" in raw else "="
            key, value = raw.replace("==", "=").split(op, 1)
            if key not in allowed:
                raise FakeApiError(400, f'field label not supported: {key}"')
            self.fields.append((op, key, value))

    def match(self, obj: Obj) -> bool:
        if not _label_match(_labels(obj), self.labels):
            return False
        return all((_dotted(obj, key) == value) == (op == "=") for op, key, value in self.fields)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.api.handle(self, "GET")

    def do_POST(self) -> None:
        self.server.api.handle(self, "POST")

    def do_PUT(self) -> None:
        self.server.api.handle(self, "PUT")

    def do_PATCH(self) -> None:
        self.server.api.handle(self, "PATCH")

    def do_DELETE(self) -> None:
        self.server.api.handle(self, "DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: FakeKubernetesApi


class FakeKubernetesApi:
    """A fake API server with fake controllers for one namespace; see the module docstring."""

    def __init__(
        self,
        namespace: str = "edgecast",
        *,
        token: str = "fake-rollout-token",
        user: str = "system:serviceaccount:edgecast:edgecast-rollout",
        ready_after: float = 0.1,
        pod_termination_seconds: float = 0.05,
        endpoints_delay: float = 0.05,
    ) -> None:
        self.namespace = namespace
        self.token = token
        self.user = user
        self.role = rollout_role(namespace, user.rsplit(":", 1)[-1])
        self.default_ready_after = ready_after
        self.pod_termination_seconds = pod_termination_seconds
        self.endpoints_delay = endpoints_delay
        self.behaviours: dict[str, FakePodBehaviour] = {}
        self.freeze_endpoints = False
        self.service_proxy_model: str | None = None
        self.concurrent_service_writes = 0
        self.expire_watches = 0
        self.requests: list[tuple[str, str]] = []
        self.conflicts = 0
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._rv = 100
        self._objects: dict[str, dict[str, Obj]] = {resource: {} for resource in RESOURCES}
        self._history: list[_Change] = []
        self._pod_owner: dict[str, str] = {}
        self._timers: set[threading.Timer] = set()
        self._pending = 0
        self._endpoints_scheduled = False
        self._ips = itertools.count(10)
        self._round_robin = itertools.count()
        self._stopping = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeKubernetesApi:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.api = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            for timer in self._timers:
                timer.cancel()
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeKubernetesApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def write_kubeconfig(self, path: Path, context: str = "fake-edge") -> Path:
        """A kubeconfig whose only context points at this fake, with the Role's token."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake-cluster", "cluster": {"server": self.url}}],
            "users": [{"name": "edgecast-rollout", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": context,
                    "context": {
                        "cluster": "fake-cluster",
                        "user": "edgecast-rollout",
                        "namespace": self.namespace,
                    },
                }
            ],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # -- knobs and inspection for tests -----------------------------------------------------

    def behaviour(self, model_id: str) -> FakePodBehaviour:
        with self._lock:
            if model_id not in self.behaviours:
                self.behaviours[model_id] = FakePodBehaviour(ready_after=self.default_ready_after)
            return self.behaviours[model_id]

    def fail(
        self, method: str, resource: str, code: int, *, times: int = 1, message: str | None = None
    ) -> None:
        """Answer the next ``times`` matching requests with ``code`` (resource as in RBAC)."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), resource, code, times, message))

    def get(self, resource: str, name: str) -> Obj | None:
        with self._lock:
            found = self._objects[resource].get(name)
            return copy.deepcopy(found) if found is not None else None

    def names(self, resource: str) -> list[str]:
        with self._lock:
            return sorted(self._objects[resource])

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def endpoint_history(self, service: str, since: int = 0) -> list[list[str]]:
        """The Service's ready endpoints (pod names) after each EndpointSlice change."""
        with self._lock:
            return [
                sorted(
                    e["targetRef"]["name"]
                    for e in change.obj.get("endpoints") or []
                    if e["conditions"]["ready"]
                )
                for change in self._history
                if change.rv > since
                and change.resource == "endpointslices"
                and _labels(change.obj).get(SERVICE_NAME_LABEL) == service
            ]

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.requests if m in ("POST", "PUT", "PATCH", "DELETE")]

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until every scheduled controller action has run."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._pending == 0, timeout=timeout):
                raise AssertionError(f"the fake's controllers did not settle in {timeout}s")

    def seed(self, *objects: Obj) -> None:
        """Create objects as the server would (defaults included), then let controllers run."""
        with self._lock:
            for obj in objects:
                resource = {kind: res for res, (_, _, kind) in RESOURCES.items()}[obj["kind"]]
                self._create(resource, copy.deepcopy(obj))
            self._settle()

    # -- HTTP -------------------------------------------------------------------------------

    def handle(self, request: _Handler, method: str) -> None:
        parts = urlsplit(request.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append((method, request.path))
        try:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                raise FakeApiError(401, "Unauthorized")
            route = self._route(path)
            verb = self._verb(method, route, query)
            self._authorize(verb, route)
            self._inject_fault(method, route)
            if verb == "watch":
                self._serve_watch(request, route, query)
                return
            code, payload, content_type = self._dispatch(
                method, route, query, body, request.headers.get("Content-Type", "")
            )
        except FakeApiError as err:
            code, payload, content_type = err.code, err.status(), "application/json"
        except (BrokenPipeError, ConnectionResetError):
            request.close_connection = True
            return
        self._send(request, code, payload, content_type)

    def _send(self, request: _Handler, code: int, payload: Any, content_type: str) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            request.send_response(code)
            request.send_header("Content-Type", content_type)
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            request.close_connection = True

    def _route(self, path: str) -> _Route:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise FakeApiError(404, f"the server could not find the requested resource ({path})")
        if not rest:
            raise FakeApiError(404, "the fake serves no discovery documents")
        if rest[0] == "namespaces" and len(rest) >= 3:
            return _Route(
                group,
                version,
                rest[1],
                rest[2],
                rest[3] if len(rest) > 3 else None,
                rest[4] if len(rest) > 4 else None,
                "/".join(rest[5:]),
            )
        # Cluster scope: namespaces themselves, nodes, and so on.
        return _Route(
            group,
            version,
            None,
            rest[0],
            rest[1] if len(rest) > 1 else None,
            rest[2] if len(rest) > 2 else None,
            "",
        )

    @staticmethod
    def _verb(method: str, route: _Route, query: dict[str, list[str]]) -> str:
        if method == "GET":
            if route.name is None:
                watching = query.get("watch", ["false"])[0] in ("true", "1")
                return "watch" if watching else "list"
            return "get"
        return {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if route.name else "deletecollection",
        }[method]

    def _authorize(self, verb: str, route: _Route) -> None:
        allowed = self.role.get((route.group, route.rbac_resource), set())
        if route.namespace == self.namespace and verb in allowed:
            return
        group = route.group
        scope = (
            f'in the namespace "{route.namespace}"' if route.namespace else "at the cluster scope"
        )
        subject = f'{route.rbac_resource} "{route.name}"' if route.name else route.rbac_resource
        raise FakeApiError(
            403,
            f'{subject} is forbidden: User "{self.user}" cannot {verb} resource '
            f'"{route.rbac_resource}" in API group "{group}" {scope}',
            name=route.name or "",
            group=group,
            kind=route.resource,
        )

    def _inject_fault(self, method: str, route: _Route) -> None:
        with self._lock:
            for fault in self._faults:
                if (
                    fault.times > 0
                    and fault.method == method
                    and fault.resource == (route.rbac_resource)
                ):
                    fault.times -= 1
                    reason = STATUS_REASONS.get(fault.code, "Unknown")
                    message = fault.message or (
                        f'{route.rbac_resource} "{route.name}" is forbidden: User "{self.user}" '
                        f'cannot {method.lower()} resource "{route.rbac_resource}" in API group '
                        f'"{route.group}" in the namespace "{route.namespace}"'
                        if fault.code == 403
                        else f"fake fault: {reason} on {method} {route.rbac_resource}"
                    )
                    raise FakeApiError(fault.code, message, reason)

    def _dispatch(
        self,
        method: str,
        route: _Route,
        query: dict[str, list[str]],
        body: bytes,
        content_type: str,
    ) -> tuple[int, Any, str]:
        if route.subresource == "proxy" and route.resource in ("pods", "services"):
            return self._proxy(route)
        if route.resource not in RESOURCES or route.subresource:
            raise FakeApiError(404, f"the server could not find the requested resource {route}")
        with self._lock:
            if method == "GET" and route.name is None:
                return 200, self._list(route.resource, _Selectors(route.resource, query)), _JSON
            if method == "GET":
                return 200, self._full(route.resource, self._existing(route)), _JSON
            if method == "POST":
                obj = self._decode(body)
                created = self._create(route.resource, obj, namespace=route.namespace)
                self._settle()
                return 201, self._full(route.resource, created), _JSON
            if method == "PATCH":
                patched = self._patch(route, self._decode(body), content_type)
                self._settle()
                return 200, self._full(route.resource, patched), _JSON
            if method == "DELETE":
                options = self._decode(body) if body else {}
                policy = query.get("propagationPolicy", [options.get("propagationPolicy")])[0]
                result = self._delete(route, policy or "Background")
                self._settle()
                return 200, result, _JSON
        raise FakeApiError(405, f"{method} is not supported by the fake")

    @staticmethod
    def _decode(body: bytes) -> Any:
        try:
            return json.loads(body or b"null")
        except ValueError as exc:
            raise FakeApiError(400, f"couldn't get version/kind; json parse error: {exc}") from exc

    # -- storage ----------------------------------------------------------------------------

    def _full(self, resource: str, obj: Obj) -> Obj:
        return {"apiVersion": api_version(resource), "kind": RESOURCES[resource][2], **obj}

    def _list(self, resource: str, selectors: _Selectors) -> Obj:
        items = []
        for obj in self._objects[resource].values():
            if selectors.match(obj):
                item = copy.deepcopy(obj)
                item.pop("apiVersion", None)
                item.pop("kind", None)
                items.append(item)
        return {
            "apiVersion": api_version(resource),
            "kind": f"{RESOURCES[resource][2]}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _existing(self, route: _Route) -> Obj:
        assert route.name is not None
        found = self._objects[route.resource].get(route.name)
        if found is None:
            raise FakeApiError(
                404,
                f'{qualified(route.resource)} "{route.name}" not found',
                name=route.name,
                group=route.group,
                kind=route.resource,
            )
        return copy.deepcopy(found)

    def _write(self, resource: str, obj: Obj, change: str) -> Obj:
        name = obj["metadata"]["name"]
        before = self._objects[resource].get(name)
        self._rv += 1
        obj = copy.deepcopy(obj)
        obj.setdefault("apiVersion", api_version(resource))
        obj.setdefault("kind", RESOURCES[resource][2])
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if change == "DELETED":
            self._objects[resource].pop(name, None)
        else:
            self._objects[resource][name] = obj
        self._history.append(
            _Change(self._rv, resource, change, copy.deepcopy(obj), copy.deepcopy(before))
        )
        self._cond.notify_all()
        return obj

    def _create(self, resource: str, obj: Any, namespace: str | None = None) -> Obj:
        if not isinstance(obj, dict) or obj.get("kind") != RESOURCES[resource][2]:
            raise FakeApiError(400, f"the body is not a {RESOURCES[resource][2]}")
        metadata = obj.setdefault("metadata", {})
        namespace = namespace or self.namespace
        if metadata.get("namespace", namespace) != namespace:
            raise FakeApiError(
                400,
                "the namespace of the provided object does not match the namespace sent on the "
                "request",
            )
        name = metadata.get("name")
        if not name:
            raise FakeApiError(422, f"{RESOURCES[resource][2]} is invalid: metadata.name: Required")
        if name in self._objects[resource]:
            raise FakeApiError(
                409,
                f'{qualified(resource)} "{name}" already exists',
                "AlreadyExists",
                name=name,
                group=RESOURCES[resource][0],
                kind=resource,
            )
        metadata.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=now(),
        )
        metadata.pop("resourceVersion", None)
        if resource == "deployments":
            metadata["generation"] = 1
            _default_deployment(obj)
            obj["status"] = {}
        elif resource == "services":
            _default_service(obj, next(self._ips))
        return self._write(resource, obj, "ADDED")

    def _patch(self, route: _Route, patch: Any, content_type: str) -> Obj:
        kind = content_type.split(";")[0].strip()
        if kind == "application/json-patch+json":
            if not isinstance(patch, list):
                raise FakeApiError(
                    400,
                    "json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp",
                )
            raise FakeApiError(415, "the fake does not apply JSON patches")
        if kind not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise FakeApiError(415, f"the body of the request was in an unknown format: {kind}")
        if not isinstance(patch, dict):
            raise FakeApiError(400, "a merge patch must be a JSON object")
        if route.resource == "services" and self.concurrent_service_writes > 0:
            self.concurrent_service_writes -= 1
            other = self._existing(route)
            other["metadata"].setdefault("annotations", {})["example.com/concurrent-writer"] = str(
                self.concurrent_service_writes
            )
            self._write("services", other, "MODIFIED")
        current = self._existing(route)
        wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted_rv is not None and str(wanted_rv) != current["metadata"]["resourceVersion"]:
            self.conflicts += 1
            raise FakeApiError(
                409,
                f'Operation cannot be fulfilled on {qualified(route.resource)} "{route.name}": '
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
                name=route.name,
                group=route.group,
                kind=route.resource,
            )
        patch = copy.deepcopy(patch)
        patch.pop("status", None)
        for frozen in ("uid", "creationTimestamp", "generation", "resourceVersion", "namespace"):
            (patch.get("metadata") or {}).pop(frozen, None)
        patched = merge_patch(current, patch)
        if route.resource == "deployments":
            _default_deployment(patched)
            if patched["spec"] != current["spec"]:
                patched["metadata"]["generation"] = current["metadata"]["generation"] + 1
        if patched == current:
            return current
        return self._write(route.resource, patched, "MODIFIED")

    def _delete(self, route: _Route, policy: str) -> Obj:
        current = self._existing(route)
        if route.resource != "deployments":
            raise FakeApiError(405, "the fake deletes Deployments only")
        if policy == "Foreground":
            if not current["metadata"].get("deletionTimestamp"):
                current["metadata"]["deletionTimestamp"] = now()
                current["metadata"]["deletionGracePeriodSeconds"] = 0
                current["metadata"]["finalizers"] = ["foregroundDeletion"]
                current = self._write("deployments", current, "MODIFIED")
            return self._full("deployments", current)
        if policy not in ("Background", "Orphan"):
            raise FakeApiError(400, f"unknown propagationPolicy {policy!r}")
        self._write("deployments", current, "DELETED")
        if policy == "Orphan":
            for pod, owner in list(self._pod_owner.items()):
                if owner == current["metadata"]["name"]:
                    del self._pod_owner[pod]
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": route.name,
                "group": "apps",
                "kind": "deployments",
                "uid": current["metadata"]["uid"],
            },
        }

    # -- watch ------------------------------------------------------------------------------

    def _serve_watch(self, request: _Handler, route: _Route, query: dict[str, list[str]]) -> None:
        resource = route.resource
        if resource not in RESOURCES:
            raise FakeApiError(404, f"the fake cannot watch {resource}")
        selectors = _Selectors(resource, query)
        since = query.get("resourceVersion", [""])[0]
        timeout = float(query.get("timeoutSeconds", ["1800"])[0])
        bookmarks = query.get("allowWatchBookmarks", ["false"])[0] == "true"
        deadline = time.monotonic() + timeout
        pending: list[Obj] = []
        with self._lock:
            if since in ("", "0"):
                cursor = self._rv
                pending = [
                    {"type": "ADDED", "object": copy.deepcopy(o)}
                    for o in self._objects[resource].values()
                    if selectors.match(o)
                ]
            else:
                cursor = int(since)
                if self.expire_watches > 0:
                    self.expire_watches -= 1
                    pending = [_expired(cursor, self._rv)]
                    deadline = 0.0
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Transfer-Encoding", "chunked")
        request.end_headers()
        try:
            while True:
                for event in pending:
                    _chunk(request, json.dumps(event).encode() + b"\n")
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping:
                    break
                with self._cond:
                    self._cond.wait_for(
                        lambda since=cursor: self._rv > since or self._stopping,
                        timeout=min(left, 0.5),
                    )
                    changes = [c for c in self._history if c.rv > cursor]
                    cursor = self._rv
                pending = [
                    event
                    for event in (_watch_event(c, resource, selectors) for c in changes)
                    if event is not None
                ]
            if bookmarks and deadline > 0:
                mark = {"kind": RESOURCES[resource][2], "apiVersion": api_version(resource)}
                mark["metadata"] = {"resourceVersion": str(cursor)}
                _chunk(request, json.dumps({"type": "BOOKMARK", "object": mark}).encode() + b"\n")
            request.wfile.write(b"0\r\n\r\n")
            request.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            request.close_connection = True

    # -- controllers ------------------------------------------------------------------------

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        def run() -> None:
            with self._cond:
                self._timers.discard(timer)
                try:
                    if not self._stopping:
                        action()
                        self._settle()
                finally:
                    self._pending -= 1
                    self._cond.notify_all()

        timer = threading.Timer(max(0.0, delay), run)
        timer.daemon = True
        self._pending += 1
        self._timers.add(timer)
        timer.start()

    def _settle(self) -> None:
        """Run the Deployment controller and garbage collector; schedule EndpointSlice sync."""
        for deployment in list(self._objects["deployments"].values()):
            self._reconcile_deployment(deployment["metadata"]["name"])
        for pod_name, owner in list(self._pod_owner.items()):
            pod = self._objects["pods"].get(pod_name)
            if pod is None:
                del self._pod_owner[pod_name]
            elif owner not in self._objects["deployments"]:
                self._terminate_pod(pod_name)
        if not self._endpoints_scheduled and self._endpoints_out_of_date():
            self._endpoints_scheduled = True
            self._later(self.endpoints_delay, self._sync_endpoint_slices)

    def _owned_pods(self, deployment: str) -> list[Obj]:
        return [
            self._objects["pods"][pod]
            for pod, owner in self._pod_owner.items()
            if owner == deployment and pod in self._objects["pods"]
        ]

    def _reconcile_deployment(self, name: str) -> None:
        deployment = self._objects["deployments"].get(name)
        if deployment is None:
            return
        owned = self._owned_pods(name)
        if deployment["metadata"].get("deletionTimestamp"):
            for pod in owned:
                self._terminate_pod(pod["metadata"]["name"])
            if not owned:
                self._write("deployments", deployment, "DELETED")
            return
        template_hash = _template_hash(deployment["spec"]["template"])
        live = [p for p in owned if not p["metadata"].get("deletionTimestamp")]
        for pod in live:
            if _labels(pod).get("pod-template-hash") != template_hash:
                self._terminate_pod(pod["metadata"]["name"])
        current = [p for p in live if _labels(p).get("pod-template-hash") == template_hash]
        wanted = deployment["spec"].get("replicas", 1)
        for _ in range(wanted - len(current)):
            current.append(self._create_pod(deployment, template_hash))
        ready = [p for p in current if _pod_ready(p)]
        status: Obj = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": len(current),
            "updatedReplicas": len(current),
        }
        if ready:
            status["readyReplicas"] = len(ready)
            status["availableReplicas"] = len(ready)
        if wanted - len(ready) > 0:
            status["unavailableReplicas"] = wanted - len(ready)
        terminating = len(owned) - len(current)
        if terminating > 0:
            status["terminatingReplicas"] = terminating
        available = len(ready) >= wanted
        status["conditions"] = [
            {
                "type": "Available",
                "status": "True" if available else "False",
                "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability."
                if available
                else "Deployment does not have minimum availability.",
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable" if available else "ReplicaSetUpdated",
                "message": f'ReplicaSet "{name}-{template_hash}" '
                + ("has successfully progressed." if available else "is progressing."),
            },
        ]
        old = copy.deepcopy(deployment.get("status") or {})
        for condition in old.get("conditions") or []:
            condition.pop("lastTransitionTime", None)
            condition.pop("lastUpdateTime", None)
        if old != status:
            for condition in status["conditions"]:
                condition["lastTransitionTime"] = condition["lastUpdateTime"] = now()
            self._write("deployments", {**deployment, "status": status}, "MODIFIED")

    def _create_pod(self, deployment: Obj, template_hash: str) -> Obj:
        template = copy.deepcopy(deployment["spec"]["template"])
        owner = deployment["metadata"]["name"]
        name = f"{owner}-{template_hash}-{uuid.uuid4().hex[:5]}"
        metadata = template.get("metadata") or {}
        spec = template["spec"]
        node = (spec.get("nodeSelector") or {}).get("kubernetes.io/hostname", "fake-node")
        pod = {
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": now(),
                "labels": {**(metadata.get("labels") or {}), "pod-template-hash": template_hash},
                "annotations": metadata.get("annotations") or {},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{owner}-{template_hash}",
                        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{owner}-{template_hash}")),
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {**spec, "nodeName": node},
            "status": {
                "phase": "Pending",
                "qosClass": "Burstable",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}
                ],
            },
        }
        written = self._write("pods", pod, "ADDED")
        self._pod_owner[name] = owner
        behaviour = self.behaviour(_pod_model(written))
        self._later(behaviour.ready_after, lambda: self._start_pod(name))
        return written

    def _start_pod(self, name: str) -> None:
        pod = self._objects["pods"].get(name)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        pod = copy.deepcopy(pod)
        behaviour = self.behaviour(_pod_model(pod))
        if behaviour.outcome not in OUTCOMES:
            raise AssertionError(f"unknown outcome {behaviour.outcome!r}")
        container = pod["spec"]["containers"][0]
        started = now()
        status = pod["status"]
        ready = behaviour.outcome == "ready"
        state: Obj = {"running": {"startedAt": started}}
        last_state: Obj = {}
        restarts = 0
        if behaviour.outcome == "crash_loop":
            state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off 10s restarting failed container={container['name']} "
                    f"pod={name}_{self.namespace}({pod['metadata']['uid']})",
                }
            }
            last_state = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": started}}
            restarts = 3
            self._event(pod, "BackOff", "Back-off restarting failed container predictor")
        elif behaviour.outcome == "image_never_pull":
            message = (
                f'Container image "{container["image"]}" is not present with pull policy of Never'
            )
            state = {"waiting": {"reason": "ErrImageNeverPull", "message": message}}
            self._event(pod, "ErrImageNeverPull", message)
        elif behaviour.outcome == "never_ready":
            self._event(
                pod, "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503"
            )
        if behaviour.outcome != "image_never_pull":
            ip = f"10.42.0.{next(self._ips)}"
            status.update(phase="Running", podIP=ip, podIPs=[{"ip": ip}], hostIP="192.168.1.10")
        status["startTime"] = started
        reason = None if ready else "ContainersNotReady"
        not_ready = None if ready else f"containers with unready status: [{container['name']}]"
        status["conditions"] = [
            _condition("PodReadyToStartContainers", True),
            _condition("Initialized", True),
            _condition("Ready", ready, reason, not_ready),
            _condition("ContainersReady", ready, reason, not_ready),
            _condition("PodScheduled", True),
        ]
        status["containerStatuses"] = [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "" if behaviour.outcome == "image_never_pull" else "sha256:fake",
                "ready": ready,
                "started": "running" in state,
                "restartCount": restarts,
                "state": state,
                "lastState": last_state,
            }
        ]
        self._write("pods", pod, "MODIFIED")

    def _terminate_pod(self, name: str) -> None:
        pod = self._objects["pods"].get(name)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        pod = copy.deepcopy(pod)
        pod["metadata"]["deletionTimestamp"] = now()
        pod["metadata"]["deletionGracePeriodSeconds"] = pod["spec"].get(
            "terminationGracePeriodSeconds", 30
        )
        self._write("pods", pod, "MODIFIED")

        def remove() -> None:
            gone = self._objects["pods"].get(name)
            if gone is not None:
                self._write("pods", gone, "DELETED")
                self._pod_owner.pop(name, None)

        self._later(self.pod_termination_seconds, remove)

    def _event(self, pod: Obj, reason: str, message: str, kind: str = "Warning") -> None:
        stamp = now()
        event = {
            "metadata": {
                "name": f"{pod['metadata']['name']}.{uuid.uuid4().hex[:16]}",
                "namespace": self.namespace,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": stamp,
            },
            "involvedObject": {
                "kind": "Pod",
                "namespace": self.namespace,
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
                "apiVersion": "v1",
                "fieldPath": "spec.containers{predictor}",
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": "kubelet", "host": pod["spec"].get("nodeName", "")},
            "reportingComponent": "kubelet",
        }
        self._write("events", event, "ADDED")

    def _desired_slice(self, service: Obj) -> tuple[list[Obj] | None, list[Obj]]:
        selector = (service.get("spec") or {}).get("selector") or {}
        endpoints: list[Obj] = []
        ports: list[Obj] = []
        for pod in self._objects["pods"].values():
            ip = (pod.get("status") or {}).get("podIP")
            if not selector or not ip:
                continue
            if any(_labels(pod).get(k) != v for k, v in selector.items()):
                continue
            terminating = bool(pod["metadata"].get("deletionTimestamp"))
            ready = _pod_ready(pod)
            endpoints.append(
                {
                    "addresses": [ip],
                    "conditions": {
                        "ready": ready and not terminating,
                        "serving": ready,
                        "terminating": terminating,
                    },
                    "nodeName": pod["spec"].get("nodeName"),
                    "targetRef": {
                        "kind": "Pod",
                        "namespace": self.namespace,
                        "name": pod["metadata"]["name"],
                        "uid": pod["metadata"]["uid"],
                    },
                }
            )
            if not ports:
                ports = [_endpoint_port(port, pod) for port in service["spec"].get("ports") or []]
        endpoints.sort(key=lambda e: e["targetRef"]["name"])
        return (endpoints or None), ports

    def _slice_of(self, service: str) -> Obj | None:
        for endpoint_slice in self._objects["endpointslices"].values():
            if _labels(endpoint_slice).get(SERVICE_NAME_LABEL) == service:
                return endpoint_slice
        return None

    def _endpoints_out_of_date(self) -> bool:
        if self.freeze_endpoints:
            return False
        for service in self._objects["services"].values():
            current = self._slice_of(service["metadata"]["name"])
            endpoints, ports = self._desired_slice(service)
            if current is None or (current.get("endpoints"), current.get("ports")) != (
                endpoints,
                ports,
            ):
                return True
        return False

    def _sync_endpoint_slices(self) -> None:
        self._endpoints_scheduled = False
        if self.freeze_endpoints:
            return
        for service in list(self._objects["services"].values()):
            name = service["metadata"]["name"]
            endpoints, ports = self._desired_slice(service)
            current = self._slice_of(name)
            if current is None:
                current = {
                    "metadata": {
                        "name": f"{name}-{uuid.uuid4().hex[:5]}",
                        "generateName": f"{name}-",
                        "namespace": self.namespace,
                        "uid": str(uuid.uuid4()),
                        "creationTimestamp": now(),
                        "generation": 1,
                        "labels": {
                            SERVICE_NAME_LABEL: name,
                            "endpointslice.kubernetes.io/managed-by": (
                                "endpointslice-controller.k8s.io"
                            ),
                        },
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Service",
                                "name": name,
                                "uid": service["metadata"]["uid"],
                                "controller": True,
                                "blockOwnerDeletion": True,
                            }
                        ],
                    },
                    "addressType": "IPv4",
                    "endpoints": endpoints,
                    "ports": ports,
                }
                self._write("endpointslices", current, "ADDED")
            elif (current.get("endpoints"), current.get("ports")) != (endpoints, ports):
                updated = copy.deepcopy(current)
                updated.update(endpoints=endpoints, ports=ports)
                updated["metadata"]["generation"] += 1
                self._write("endpointslices", updated, "MODIFIED")

    # -- proxies ----------------------------------------------------------------------------

    def _proxy(self, route: _Route) -> tuple[int, Any, str]:
        """A pod's or a Service's answer through the API server's proxy (``name:port/path``)."""
        assert route.name is not None
        name, _, port = route.name.partition(":")
        with self._lock:
            target = self._objects[route.resource].get(name)
            if target is None:
                raise FakeApiError(
                    404, f'{route.resource} "{name}" not found', name=name, kind=route.resource
                )
            if route.resource == "pods":
                return self._pod_answer(target, port, route.rest)
            return self._service_answer(target, port, route.rest)

    def _service_answer(self, service: Obj, port: str, path: str) -> tuple[int, Any, str]:
        """What one of the ready pods behind ``service`` answers on ``path``."""
        name = service["metadata"]["name"]
        declared = {
            str(p.get(key)) for p in service["spec"].get("ports") or [] for key in ("name", "port")
        }
        if port and port not in declared:
            raise FakeApiError(
                503, f'no endpoints available for service "{name}" (no port {port!r})'
            )
        endpoint_slice = self._slice_of(name) or {}
        ready = [
            e["targetRef"]["name"]
            for e in endpoint_slice.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready")
        ]
        if not ready:
            raise FakeApiError(503, f'no endpoints available for service "{name}"')
        pod = self._objects["pods"].get(ready[next(self._round_robin) % len(ready)])
        if pod is None:
            raise FakeApiError(503, f'no endpoints available for service "{name}"')
        code, payload, kind = self._pod_answer(pod, "", path)
        if self.service_proxy_model is not None and code == 200:
            payload = {**payload, "model_id": self.service_proxy_model}
        return code, payload, kind

    def _pod_answer(self, pod: Obj, port: str, path: str) -> tuple[int, Any, str]:
        """What the predictor in ``pod`` answers on ``path``."""
        ip = (pod.get("status") or {}).get("podIP")
        container_port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
        if not ip:
            raise FakeApiError(503, f'pod "{pod["metadata"]["name"]}" has no IP address yet')
        if port and port not in (str(container_port), "http"):
            raise FakeApiError(
                503,
                f"error trying to reach service: dial tcp {ip}:{port}: connect: connection refused",
            )
        behaviour = self.behaviour(_pod_model(pod))
        model = behaviour.serves_model or _pod_model(pod)
        if behaviour.outcome != "ready":
            if path == "readyz":
                return 503, {"ready": False, "reason": behaviour.not_ready_reason}, _JSON
            return 503, {"error": "no model is loaded yet", "status": 503}, _JSON
        if path == "v1/model":
            return 200, {"model_id": model, "runtime": "litert", "previous": None}, _JSON
        if path == "readyz":
            return 200, {"ready": True, "model_id": model}, _JSON
        return 404, {"error": f"no route /{path}", "status": 404}, _JSON


_JSON = "application/json"


def _chunk(request: _Handler, data: bytes) -> None:
    request.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    request.wfile.flush()


def _expired(since: int, current: int) -> Obj:
    return {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"too old resource version: {since} ({current})",
            "reason": "Expired",
            "code": 410,
        },
    }


def _watch_event(change: _Change, resource: str, selectors: _Selectors) -> Obj | None:
    if change.resource != resource:
        return None
    now_matches = selectors.match(change.obj)
    was_matching = change.before is not None and selectors.match(change.before)
    if change.type == "DELETED":
        kind = "DELETED" if now_matches or was_matching else None
    elif change.type == "ADDED" or not was_matching:
        kind = "ADDED" if now_matches else None
    else:
        kind = "MODIFIED" if now_matches else "DELETED"
    return {"type": kind, "object": change.obj} if kind else None


def _condition(kind: str, ok: bool, reason: str | None = None, message: str | None = None) -> Obj:
    condition: Obj = {
        "type": kind,
        "status": "True" if ok else "False",
        "lastTransitionTime": now(),
    }
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _pod_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _pod_model(pod: Obj) -> str:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if MODEL_ID_ANNOTATION in annotations:
        return str(annotations[MODEL_ID_ANNOTATION])
    args = pod["spec"]["containers"][0].get("args") or []
    return str(args[args.index("--model-id") + 1]) if "--model-id" in args else ""


def _template_hash(template: Obj) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _endpoint_port(port: Obj, pod: Obj) -> Obj:
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, str):
        for container in pod["spec"]["containers"]:
            for declared in container.get("ports") or []:
                if declared.get("name") == target:
                    target = declared["containerPort"]
    return {"name": port.get("name", ""), "port": target, "protocol": port.get("protocol", "TCP")}


def _iter_probes(container: Obj) -> Iterator[Obj]:
    for key in ("readinessProbe", "livenessProbe", "startupProbe"):
        if key in container:
            yield container[key]


def _default_deployment(deployment: Obj) -> None:
    """A few of the API server's defaults, so that live objects differ from rendered ones."""
    spec = deployment.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("progressDeadlineSeconds", 600)
    spec.setdefault("revisionHistoryLimit", 10)
    pod_spec = spec.setdefault("template", {}).setdefault("spec", {})
    pod_spec.setdefault("restartPolicy", "Always")
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("schedulerName", "default-scheduler")
    for container in pod_spec.get("containers") or []:
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        for probe in _iter_probes(container):
            if "httpGet" in probe:
                probe["httpGet"].setdefault("scheme", "HTTP")
            probe.setdefault("successThreshold", 1)


def _default_service(service: Obj, address: int) -> None:
    spec = service.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec["clusterIP"] = f"10.43.0.{address}"
    spec["clusterIPs"] = [spec["clusterIP"]]
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    service["status"] = {"loadBalancer": {}}
