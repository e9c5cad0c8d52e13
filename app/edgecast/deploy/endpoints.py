"""The namespaced API endpoints the deploy package calls, over the Kubernetes client's transport.

The client's generated API classes build a pydantic model for every object kind they name when
first used: over a second for the three groups here on a small machine, paid again by every
Ansible task that talks to the cluster. Objects here travel as JSON anyway, so these classes
keep only what a call needs: its path, its query, its body, and the client's authentication,
TLS and errors. Methods have the generated names and parameters, so ``kubernetes.watch`` streams
them unchanged.
"""

from __future__ import annotations

from typing import Any

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

# Query parameters by their Python names, as the generated methods take them.
_QUERY = {
    "label_selector": "labelSelector",
    "field_selector": "fieldSelector",
    "resource_version": "resourceVersion",
    "allow_watch_bookmarks": "allowWatchBookmarks",
    "timeout_seconds": "timeoutSeconds",
    "watch": "watch",
    "propagation_policy": "propagationPolicy",
}


class _Group:
    """One API group's endpoints; every call answers the raw response (the JSON unread)."""

    prefix = ""

    def __init__(self, api_client: ApiClient) -> None:
        self.api_client = api_client

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        _content_type: str | None = None,
        _request_timeout: Any = None,
        _preload_content: bool = False,
        **query: Any,
    ) -> urllib3.BaseHTTPResponse:
        """The request, as the generated methods make it with ``_preload_content=False``; a
        non-2xx answer raises :class:`ApiException` with the API's Status as its body."""
        if _preload_content:
            raise ValueError("these endpoints answer raw responses only (_preload_content=False)")
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = _content_type or "application/json"
        request = self.api_client.param_serialize(
            method=method,
            resource_path=self.prefix + path,
            query_params=[
                (_QUERY[key], value) for key, value in query.items() if value is not None
            ],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(*request, _request_timeout=_request_timeout)
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response


class CoreApi(_Group):
    """Services, pods (and their proxy) and events, of the core group."""

    prefix = "/api/v1/namespaces/"

    def read_namespaced_service(self, name: str, namespace: str, **options: Any) -> Any:
        return self._call("GET", f"{namespace}/services/{name}", **options)

    def create_namespaced_service(self, namespace: str, body: Any, **options: Any) -> Any:
        return self._call("POST", f"{namespace}/services", body=body, **options)

    def patch_namespaced_service(self, name: str, namespace: str, body: Any, **options: Any) -> Any:
        return self._call("PATCH", f"{namespace}/services/{name}", body=body, **options)

    def list_namespaced_pod(self, namespace: str, **options: Any) -> Any:
        return self._call("GET", f"{namespace}/pods", **options)

    def list_namespaced_event(self, namespace: str, **options: Any) -> Any:
        return self._call("GET", f"{namespace}/events", **options)

    def connect_get_namespaced_pod_proxy_with_path(
        self, name: str, namespace: str, path: str, **options: Any
    ) -> Any:
        return self._call("GET", f"{namespace}/pods/{name}/proxy/{path}", **options)

    def connect_get_namespaced_service_proxy_with_path(
        self, name: str, namespace: str, path: str, **options: Any
    ) -> Any:
        return self._call("GET", f"{namespace}/services/{name}/proxy/{path}", **options)


class AppsApi(_Group):
    """Deployments, of the apps group."""

    prefix = "/apis/apps/v1/namespaces/"

    def list_namespaced_deployment(self, namespace: str, **options: Any) -> Any:
        return self._call("GET", f"{namespace}/deployments", **options)

    def read_namespaced_deployment(self, name: str, namespace: str, **options: Any) -> Any:
        return self._call("GET", f"{namespace}/deployments/{name}", **options)

    def create_namespaced_deployment(self, namespace: str, body: Any, **options: Any) -> Any:
        return self._call("POST", f"{namespace}/deployments", body=body, **options)

    def patch_namespaced_deployment(
        self, name: str, namespace: str, body: Any, **options: Any
    ) -> Any:
        return self._call("PATCH", f"{namespace}/deployments/{name}", body=body, **options)

    def delete_namespaced_deployment(self, name: str, namespace: str, **options: Any) -> Any:
        return self._call("DELETE", f"{namespace}/deployments/{name}", **options)


class DiscoveryApi(_Group):
    """EndpointSlices, of the discovery.k8s.io group."""

    prefix = "/apis/discovery.k8s.io/v1/namespaces/"

    def list_namespaced_endpoint_slice(self, namespace: str, **options: Any) -> Any:
        return self._call("GET", f"{namespace}/endpointslices", **options)
