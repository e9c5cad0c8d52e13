"""The client layer: calls as plain dicts, reasons for failed calls, and watches with their own
timeout, against recorded objects and watch streams."""

from __future__ import annotations

import json

import pytest
import urllib3
from kubernetes.config import kube_config
from recorded import RecordedApi, Watch, api_error, listing, load

from edgecast.deploy.kube import (
    CheckFailed,
    KubeConfigError,
    WatchTimeout,
    api_reason,
    connect,
    label_selector,
    short,
)
from edgecast.deploy.nodestate import deployment_progress

DEPLOYMENT = "predictor-edge-1-af30308345"


def test_a_call_is_namespaced_bounded_and_answers_the_apis_json(api: RecordedApi):
    service = load("service-selecting-model-a.yaml")
    api.answer("read_namespaced_service", service)

    got = api.kube(request_timeout=7.0).call(api.read_namespaced_service, "predictor-edge-1")

    assert got == service
    ((args, kwargs),) = api.called("read_namespaced_service")
    assert args == ("predictor-edge-1",)
    assert kwargs == {"namespace": "edgecast", "_preload_content": False, "_request_timeout": 7.0}


def test_an_answer_that_is_not_an_object_is_refused(api: RecordedApi):
    api.answer("read_namespaced_service", ["not", "an", "object"])

    with pytest.raises(ValueError, match="expected a JSON object from the API"):
        api.kube().call(api.read_namespaced_service, "predictor-edge-1")


def test_not_found_is_none_and_other_errors_raise(api: RecordedApi):
    kube = api.kube()
    api.answer("read_namespaced_service", api_error(404, 'services "predictor-edge-1" not found'))
    assert kube.get_or_none(api.read_namespaced_service, "predictor-edge-1") is None

    api.answers.clear()
    api.answer("read_namespaced_service", api_error(403, "forbidden"))
    with pytest.raises(Exception, match="Forbidden"):
        kube.get_or_none(api.read_namespaced_service, "predictor-edge-1")


def test_deleting_what_is_gone_is_done(api: RecordedApi):
    api.answer("delete_namespaced_deployment", api_error(404, "not found"))
    api.kube().delete(api.delete_namespaced_deployment, DEPLOYMENT, "Background")
    ((_, kwargs),) = api.called("delete_namespaced_deployment")
    assert kwargs["propagation_policy"] == "Background"


def test_reasons_name_the_apis_own_message():
    forbidden = api_error(
        403,
        'services "predictor-edge-1" is forbidden: User "system:serviceaccount:edgecast:'
        'edgecast-rollout" cannot patch resource "services"',
    )
    assert api_reason(forbidden) == (
        '403 Forbidden: services "predictor-edge-1" is forbidden: User '
        '"system:serviceaccount:edgecast:edgecast-rollout" cannot patch resource "services"'
    )
    proxy = api_error(503, body="error trying to reach service: dial tcp 10.42.0.23:8080")
    assert api_reason(proxy) == (
        "503 Service Unavailable: error trying to reach service: dial tcp 10.42.0.23:8080"
    )
    assert api_reason(CheckFailed("the pod answers another model")) == (
        "the pod answers another model"
    )
    timeout = urllib3.exceptions.ReadTimeoutError(None, "/api/v1", "Read timed out.")
    assert api_reason(timeout).startswith("ReadTimeoutError: ")


def test_selectors_and_short_texts():
    assert label_selector({"b": "2", "a": "1"}) == "a=1,b=2"
    assert short("a\n  b\tc") == "a b c"
    assert short("x" * 300, 20) == "x" * 17 + "..."


KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
  - {name: a, cluster: {server: "https://192.0.2.1:6443"}}
  - {name: b, cluster: {server: "https://192.0.2.2:6443"}}
users:
  - {name: u, user: {token: t}}
contexts:
  - {name: first, context: {cluster: a, user: u}}
  - {name: second, context: {cluster: b, user: u}}
current-context: first
"""


@pytest.fixture
def environment(tmp_path, monkeypatch):
    """No cluster around, no kubeconfig named by the environment and none at the default place
    (the client reads KUBECONFIG once, at import, into its default location); a file to name."""
    for name in ("KUBERNETES_SERVICE_HOST", "K8S_AUTH_KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "none"))
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return path


def server_of(apis) -> str:
    return apis.core.api_client.configuration.host


@pytest.mark.parametrize(
    ("kubeconfig", "context", "named_by", "server"),
    [
        ("file", None, None, "https://192.0.2.1:6443"),
        ("file", "second", None, "https://192.0.2.2:6443"),
        (None, None, "K8S_AUTH_KUBECONFIG", "https://192.0.2.1:6443"),
        (None, None, "default", "https://192.0.2.1:6443"),
        (None, "second", "default", "https://192.0.2.2:6443"),
    ],
)
def test_the_client_is_found_as_kubernetes_core_finds_it(
    environment, monkeypatch, kubeconfig, context, named_by, server
):
    if named_by == "default":
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(environment))
    elif named_by:
        monkeypatch.setenv(named_by, str(environment))
    path = str(environment) if kubeconfig == "file" else None
    assert server_of(connect(path, context)) == server


def test_an_unusable_kubeconfig_is_named(environment):
    missing = environment.parent / "missing"
    with pytest.raises(
        KubeConfigError, match=f"cannot configure the Kubernetes client from {missing}"
    ):
        connect(str(missing))


def test_without_a_cluster_or_a_kubeconfig_the_error_says_where_it_looked(environment):
    with pytest.raises(
        KubeConfigError, match="from the in-cluster service account or the default kubeconfig"
    ):
        connect()


def is_available(objects: dict) -> bool:
    deployment = objects.get(DEPLOYMENT)
    return deployment is not None and deployment_progress(deployment)[0]


def test_a_watch_ends_when_the_condition_holds_on_the_listed_objects(api: RecordedApi):
    api.answer("list_namespaced_deployment", listing(load("deployment-model-b-available.yaml")))

    found = api.kube().watch_until(
        api.list_namespaced_deployment,
        check=is_available,
        timeout=5,
        on_timeout=str,
        field_selector=f"metadata.name={DEPLOYMENT}",
    )

    assert set(found) == {DEPLOYMENT}
    ((_, kwargs),) = api.called("list_namespaced_deployment")
    assert "watch" not in kwargs, "no watch when the list already shows the condition"
    assert kwargs["field_selector"] == f"metadata.name={DEPLOYMENT}"


def test_a_watch_follows_the_events_from_the_lists_resource_version(api: RecordedApi):
    starting = load("deployment-model-b-starting.yaml")
    api.answer(
        "list_namespaced_deployment",
        lambda **kw: (
            Watch(load("watch-deployment-becomes-available.yaml"))
            if kw.get("watch")
            else listing(starting, resource_version="4761")
        ),
    )

    found = api.kube().watch_until(
        api.list_namespaced_deployment, check=is_available, timeout=5, on_timeout=str
    )

    assert found[DEPLOYMENT]["metadata"]["resourceVersion"] == "4788"
    plain, watched = api.called("list_namespaced_deployment")
    assert "watch" not in plain[1]
    assert watched[1]["watch"] is True
    assert watched[1]["resource_version"] == "4761"
    assert watched[1]["allow_watch_bookmarks"] is True
    assert watched[1]["timeout_seconds"] == 5


def test_a_watch_that_ends_resumes_from_the_last_bookmark(api: RecordedApi):
    starting = load("deployment-model-b-starting.yaml")
    available = load("deployment-model-b-available.yaml")
    bookmark = load("watch-deployment-becomes-available.yaml")[1]
    streams = [Watch([bookmark]), Watch([{"type": "MODIFIED", "object": available}])]
    api.answer(
        "list_namespaced_deployment",
        lambda **kw: (
            streams.pop(0) if kw.get("watch") else listing(starting, resource_version="4761")
        ),
    )

    api.kube().watch_until(
        api.list_namespaced_deployment, check=is_available, timeout=5, on_timeout=str
    )

    versions = [kw.get("resource_version") for _, kw in api.called("list_namespaced_deployment")]
    assert versions == [None, "4761", "4780"], "the second watch starts at the bookmark"


def test_an_expired_resource_version_lists_again(api: RecordedApi):
    starting = load("deployment-model-b-starting.yaml")
    available = load("deployment-model-b-available.yaml")
    answers = [
        listing(starting, resource_version="4761"),
        Watch(load("watch-expired.yaml")),
        listing(available, resource_version="4795"),
    ]
    api.answer("list_namespaced_deployment", lambda **kw: answers.pop(0))

    found = api.kube().watch_until(
        api.list_namespaced_deployment, check=is_available, timeout=5, on_timeout=str
    )

    assert found[DEPLOYMENT]["metadata"]["resourceVersion"] == "4788"
    calls = api.called("list_namespaced_deployment")
    assert [kw.get("watch", False) for _, kw in calls] == [False, True, False]


def test_a_watch_times_out_with_its_own_error_naming_what_it_saw(api: RecordedApi):
    starting = load("deployment-model-b-starting.yaml")
    api.answer(
        "list_namespaced_deployment",
        lambda **kw: Watch([]) if kw.get("watch") else listing(starting),
    )

    with pytest.raises(WatchTimeout) as timeout:
        api.kube().watch_until(
            api.list_namespaced_deployment,
            check=is_available,
            timeout=0.05,
            on_timeout=lambda objects: f"still {deployment_progress(objects[DEPLOYMENT])[1]}",
        )

    assert isinstance(timeout.value, CheckFailed)
    assert "still observedGeneration=1, generation=1, replicas=1" in str(timeout.value)
    assert "Available=False (MinimumReplicasUnavailable" in str(timeout.value)


def test_a_check_may_stop_the_watch(api: RecordedApi):
    api.answer("list_namespaced_deployment", listing())

    def check(objects: dict) -> bool:
        raise CheckFailed("the Deployment was deleted while starting")

    with pytest.raises(CheckFailed, match="deleted while starting"):
        api.kube().watch_until(
            api.list_namespaced_deployment, check=check, timeout=5, on_timeout=str
        )


def test_a_watch_error_other_than_expired_raises(api: RecordedApi):
    forbidden = {
        "type": "ERROR",
        "object": json.loads(api_error(403, "watch is forbidden").body),
    }
    api.answer(
        "list_namespaced_deployment",
        lambda **kw: Watch([forbidden]) if kw.get("watch") else listing(),
    )

    with pytest.raises(Exception, match="403"):
        api.kube().watch_until(
            api.list_namespaced_deployment, check=bool, timeout=5, on_timeout=str
        )
