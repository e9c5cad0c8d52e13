"""Recorded API objects, and a stand-in for the client's API groups that answers with them.

The deploy unit tests import this module by name (pytest puts their folder on ``sys.path``).

The YAML files in ``fixtures/`` are objects in the shape the API server of Kubernetes v1.34
answers them (as ``kubectl get -o yaml`` shows them, managedFields dropped; some pods and
Deployments without the spec they do not need). :class:`RecordedApi` stands in for
``CoreV1Api``, ``AppsV1Api`` and ``DiscoveryV1Api`` together: each method answers what a test
queued for it, as the raw response the code asks for (``_preload_content=False``), so
``NamespacedApi`` and the client's own ``Watch`` run unchanged, without a server.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from edgecast.deploy.kube import KubeApis, NamespacedApi

FIXTURES = Path(__file__).parent / "fixtures"
NAMESPACE = "edgecast"


def load(name: str) -> Any:
    """A fixture file's object; in a watch fixture, each event's object may name a file."""
    data = yaml.safe_load((FIXTURES / name).read_text())
    if isinstance(data, list):
        for event in data:
            if isinstance(event.get("object"), str):
                event["object"] = load(event["object"])
    return data


def overlay(base: Any, extra: Any) -> Any:
    """``extra`` laid over ``base``: mappings merge, lists merge item by item."""
    if isinstance(base, dict) and isinstance(extra, dict):
        merged = copy.deepcopy(base)
        for key, value in extra.items():
            merged[key] = overlay(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(extra, list):
        return [overlay(b, e) for b, e in zip(base, extra, strict=False)] + copy.deepcopy(
            base[len(extra) :]
        )
    return copy.deepcopy(extra)


def served(rendered: dict[str, Any]) -> dict[str, Any]:
    """A rendered Deployment as the API answers it once created and available."""
    return overlay(rendered, load("deployment-served.yaml"))


def api_error(code: int, message: str = "", *, body: str | None = None) -> ApiException:
    """An error as the client raises it: the API's Status as its body, or ``body`` as it is."""
    http_reason, status_reason = _REASONS.get(code, ("Error", "Unknown"))
    error = ApiException(status=code, reason=http_reason)
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    status.update(message=message, reason=status_reason, code=code)
    error.body = body if body is not None else json.dumps(status)
    return error


_REASONS = {
    403: ("Forbidden", "Forbidden"),
    404: ("Not Found", "NotFound"),
    409: ("Conflict", "Conflict"),
    500: ("Internal Server Error", "InternalError"),
    503: ("Service Unavailable", "ServiceUnavailable"),
}


class Response:
    """What a call with ``_preload_content=False`` returns: a body, or a stream of watch events."""

    status = 200

    def __init__(self, body: object = None, events: list[dict[str, Any]] | None = None) -> None:
        self.data = b"" if body is None else json.dumps(body).encode()
        self.events = events or []

    def stream(self, amt: int | None = None, decode_content: bool = False) -> Iterator[bytes]:
        for event in self.events:
            yield (json.dumps(event) + "\n").encode()

    def release_conn(self) -> None:
        pass

    def close(self) -> None:
        pass


class Watch:
    """A queued answer to a watch call: its events."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events


class RecordedApi:
    """The client's API groups, answering each method with what the test queued for it.

    An answer is an object (the JSON body), a :class:`Watch`, an exception to raise, or a
    callable taking the call's arguments. The last answer queued for a method repeats.
    """

    def __init__(self) -> None:
        self.answers: dict[str, list[Any]] = {}
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def answer(self, method: str, *answers: Any) -> RecordedApi:
        self.answers.setdefault(method, []).extend(answers)
        return self

    def kube(self, request_timeout: float = 5.0) -> NamespacedApi:
        apis = KubeApis(core=self, apps=self, discovery=self)  # type: ignore[arg-type]
        return NamespacedApi(apis, NAMESPACE, request_timeout)

    def called(self, method: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(args, kwargs) for name, args, kwargs in self.calls if name == method]

    def __getattr__(self, method: str) -> Callable[..., Response]:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Response:
            self.calls.append((method, args, kwargs))
            queued = self.answers.get(method)
            if not queued:
                raise AssertionError(f"no answer queued for {method}{args}")
            answer = queued.pop(0) if len(queued) > 1 else queued[0]
            if callable(answer) and not isinstance(answer, type):
                answer = answer(*args, **kwargs)
            if isinstance(answer, BaseException):
                raise answer
            if isinstance(answer, Watch):
                assert kwargs.get("watch"), f"{method} answered a watch to a plain call"
                return Response(events=copy.deepcopy(answer.events))
            return Response(copy.deepcopy(answer))

        return call


def listing(*objects: dict[str, Any], resource_version: str = "4800") -> dict[str, Any]:
    """A list answer of ``objects``."""
    return {"metadata": {"resourceVersion": resource_version}, "items": list(objects)}
