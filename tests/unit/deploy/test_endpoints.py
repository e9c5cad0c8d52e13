"""The endpoints over the client's transport: the requests they make and the errors they raise,
captured where the client hands them to urllib3 (no server)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import urllib3
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import RESTResponse
from recorded import api_error, load

from edgecast.deploy.endpoints import AppsApi, CoreApi, DiscoveryApi
from edgecast.deploy.kube import KubeApis, NamespacedApi

HOST = "https://192.0.2.1:6443"


class Transport:
    """Stands in for the client's REST layer: records each request, answers what is queued."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[tuple[int, bytes]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> RESTResponse:
        self.requests.append({"method": method, "url": url, **kwargs})
        status, body = self.answers.pop(0) if self.answers else (200, b"{}")
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(body), status=status, reason="", preload_content=False
        )
        return RESTResponse(raw)


@pytest.fixture
def transport() -> Transport:
    return Transport()


@pytest.fixture
def kube(transport: Transport) -> NamespacedApi:
    configuration = Configuration(host=HOST, api_key={"authorization": "Bearer rollout-token"})
    api_client = ApiClient(configuration)
    api_client.rest_client = transport  # type: ignore[assignment]
    return NamespacedApi(KubeApis.from_api_client(api_client), "edgecast", 5.0)


def test_a_list_carries_its_selectors_and_the_token(kube: NamespacedApi, transport: Transport):
    transport.answers.append((200, json.dumps({"items": []}).encode()))

    assert kube.items(kube.apis.apps.list_namespaced_deployment, label_selector="a=1,b=2") == []

    (request,) = transport.requests
    assert request["method"] == "GET"
    assert (
        request["url"]
        == f"{HOST}/apis/apps/v1/namespaces/edgecast/deployments?labelSelector=a%3D1%2Cb%3D2"
    )
    assert request["headers"]["authorization"] == "Bearer rollout-token"
    assert request["headers"]["Accept"] == "application/json"
    assert request["_request_timeout"] == 5.0


def test_a_watch_asks_for_bookmarks_from_a_resource_version(transport: Transport):
    api = DiscoveryApi(ApiClient(Configuration(host=HOST)))
    api.api_client.rest_client = transport  # type: ignore[assignment]

    api.list_namespaced_endpoint_slice(
        "edgecast",
        label_selector="kubernetes.io/service-name=predictor-edge-1",
        watch=True,
        resource_version="4800",
        allow_watch_bookmarks=True,
        timeout_seconds=30,
        _preload_content=False,
    )

    url = transport.requests[0]["url"]
    assert url.startswith(f"{HOST}/apis/discovery.k8s.io/v1/namespaces/edgecast/endpointslices?")
    assert url.split("?")[1].split("&") == [
        "labelSelector=kubernetes.io/service-name%3Dpredictor-edge-1",
        "watch=true",
        "resourceVersion=4800",
        "allowWatchBookmarks=true",
        "timeoutSeconds=30",
    ]


def test_a_merge_patch_sends_its_content_type(kube: NamespacedApi, transport: Transport):
    patch = {"spec": {"selector": {"edgecast.io/model": "model-b"}}}

    kube.call(
        kube.apis.core.patch_namespaced_service,
        "predictor-edge-1",
        body=patch,
        _content_type="application/merge-patch+json",
    )

    (request,) = transport.requests
    assert (request["method"], request["url"]) == (
        "PATCH",
        f"{HOST}/api/v1/namespaces/edgecast/services/predictor-edge-1",
    )
    assert request["headers"]["Content-Type"] == "application/merge-patch+json"
    assert request["body"] == patch


def test_proxies_and_deletes_address_what_the_switch_names(
    kube: NamespacedApi, transport: Transport
):
    kube.pod_get("pod-1", 8080, "readyz")
    kube.service_get("predictor-edge-1", "http", "v1/model")
    kube.delete(
        kube.apis.apps.delete_namespaced_deployment, "predictor-edge-1-af30308345", "Foreground"
    )

    assert [(r["method"], r["url"].removeprefix(HOST)) for r in transport.requests] == [
        ("GET", "/api/v1/namespaces/edgecast/pods/pod-1:8080/proxy/readyz"),
        ("GET", "/api/v1/namespaces/edgecast/services/predictor-edge-1:http/proxy/v1/model"),
        (
            "DELETE",
            "/apis/apps/v1/namespaces/edgecast/deployments/predictor-edge-1-af30308345"
            "?propagationPolicy=Foreground",
        ),
    ]


def test_an_error_answer_raises_with_the_apis_status(kube: NamespacedApi, transport: Transport):
    refused = api_error(403, 'services "predictor-edge-1" is forbidden')
    transport.answers.append((403, refused.body.encode()))

    with pytest.raises(ApiException) as caught:
        kube.call(kube.apis.core.read_namespaced_service, "predictor-edge-1")

    assert caught.value.status == 403
    assert json.loads(caught.value.body)["message"] == 'services "predictor-edge-1" is forbidden'


def test_a_missing_object_is_none(kube: NamespacedApi, transport: Transport):
    transport.answers.append((404, api_error(404, "not found").body.encode()))
    assert kube.get_or_none(kube.apis.core.read_namespaced_service, "predictor-edge-1") is None


def test_the_json_of_an_object_comes_back_as_it_is(kube: NamespacedApi, transport: Transport):
    service = load("service-selecting-model-a.yaml")
    transport.answers.append((200, json.dumps(service).encode()))
    assert kube.call(kube.apis.core.read_namespaced_service, "predictor-edge-1") == service


def test_only_raw_responses_are_answered():
    with pytest.raises(ValueError, match="raw responses only"):
        CoreApi(ApiClient()).list_namespaced_pod("edgecast", _preload_content=True)
    assert AppsApi.prefix == "/apis/apps/v1/namespaces/"
