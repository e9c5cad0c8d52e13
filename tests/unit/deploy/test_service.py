"""The Service switch, its revert, the endpoint wait and the check through the service proxy,
against recorded Services and EndpointSlices."""

from __future__ import annotations

import pytest
from recorded import RecordedApi, api_error, listing, load

from edgecast.deploy.kube import CheckFailed, WatchTimeout
from edgecast.deploy.manifests import PredictorSpec, names_for, render
from edgecast.deploy.service import (
    ServiceSelection,
    describe_endpoints,
    endpoints_converged,
    point_service,
    restore_service,
    selector_patch,
    service_difference,
    update_service,
    verify_service,
    wait_endpoints,
)

SERVICE = "predictor-edge-1"
NEW_POD = "predictor-edge-1-af30308345-5c8d9f7b6c-x7k2p"
OLD_POD = "predictor-edge-1-73f95cf180-6d9c7b8f5d-h4j6k"
TO_B = ServiceSelection(
    selector=names_for("edge-1", "model-b").selector,
    annotations={"edgecast.io/model-id": "model-b", "edgecast.io/previous-model-id": "model-a"},
)
BACK_TO_A = ServiceSelection(
    selector=names_for("edge-1", "model-a").selector,
    annotations={"edgecast.io/model-id": "model-a", "edgecast.io/previous-model-id": None},
)


def service_body() -> dict:
    spec = PredictorSpec(node="edge-1", model_id="model-b", image="edgecast-predictor:test")
    return render(spec)["service"]


def slices(*names: str) -> dict[str, dict]:
    found = (load(f"endpointslice-{name}.yaml") for name in names)
    return {s["metadata"]["name"]: s for s in found}


def test_the_switch_patch_is_guarded_by_the_resource_version():
    assert selector_patch(load("service-selecting-model-a.yaml"), TO_B) == {
        "metadata": {
            "resourceVersion": "4702",
            "annotations": {
                "edgecast.io/model-id": "model-b",
                "edgecast.io/previous-model-id": "model-a",
            },
        },
        "spec": {"selector": names_for("edge-1", "model-b").selector},
    }


def test_the_revert_patch_removes_the_annotations_the_switch_added():
    patch = selector_patch(load("service-selecting-model-b.yaml"), BACK_TO_A)
    assert patch["metadata"]["annotations"] == {
        "edgecast.io/model-id": "model-a",
        "edgecast.io/previous-model-id": None,
    }
    assert patch["spec"]["selector"]["edgecast.io/model"] == "model-a"


def test_selector_keys_not_wanted_are_removed_and_an_equal_selector_is_left_alone():
    service = load("service-selecting-model-a.yaml")
    service["spec"]["selector"]["tier"] = "edge"
    assert selector_patch(service, TO_B)["spec"]["selector"]["tier"] is None
    assert selector_patch(load("service-selecting-model-b.yaml"), TO_B) is None


def test_server_defaults_do_not_make_a_service_differ():
    assert service_difference(load("service-selecting-model-b.yaml"), service_body()) is None


def test_the_type_and_ports_make_a_service_differ_but_its_selector_does_not():
    body = render(
        PredictorSpec(
            node="edge-1",
            model_id="model-a",
            image="edgecast-predictor:test",
            service_type="NodePort",
        )
    )["service"]
    assert service_difference(load("service-selecting-model-b.yaml"), body) == (
        "spec.type: 'ClusterIP' != 'NodePort'"
    )
    body = render(
        PredictorSpec(
            node="edge-1", model_id="model-a", image="edgecast-predictor:test", service_port=9090
        )
    )["service"]
    assert service_difference(load("service-selecting-model-b.yaml"), body) == (
        "spec.ports[0].port: 8080 != 9090"
    )


def test_an_update_retries_a_conflict_on_a_fresh_read(api: RecordedApi):
    api.answer("read_namespaced_service", load("service-selecting-model-b.yaml"))
    api.answer("patch_namespaced_service", api_error(409, "the object has been modified"), {})

    update_service(api.kube(), service_body(), TO_B, conflict_retries=2)

    assert len(api.called("read_namespaced_service")) == 2
    (_, patch), _ = api.called("patch_namespaced_service")
    assert patch["_content_type"] == "application/merge-patch+json"
    assert patch["body"]["metadata"]["resourceVersion"] == "4890"
    assert patch["body"]["metadata"]["annotations"] == {
        "edgecast.io/node": "edge-1",
        "edgecast.io/model-id": "model-b",
        "edgecast.io/previous-model-id": "model-a",
    }


def test_the_switch_retries_a_conflict_on_a_fresh_read(api: RecordedApi):
    api.answer("read_namespaced_service", load("service-selecting-model-a.yaml"))
    api.answer("patch_namespaced_service", api_error(409, "the object has been modified"), {})

    point_service(api.kube(), service_body(), TO_B, conflict_retries=2)

    assert len(api.called("read_namespaced_service")) == 2
    patches = api.called("patch_namespaced_service")
    assert len(patches) == 2
    assert patches[0][1]["_content_type"] == "application/merge-patch+json"


def test_a_conflict_on_every_attempt_says_how_many(api: RecordedApi):
    api.answer("read_namespaced_service", load("service-selecting-model-a.yaml"))
    api.answer("patch_namespaced_service", api_error(409, "the object has been modified"))

    with pytest.raises(CheckFailed) as failure:
        point_service(api.kube(), service_body(), TO_B, conflict_retries=1)

    assert str(failure.value) == (
        "Service edgecast/predictor-edge-1 changed under every one of 2 attempts (409 Conflict "
        "on metadata.resourceVersion): 409 Conflict: the object has been modified"
    )


def test_a_missing_service_is_created_with_the_model_annotations(api: RecordedApi):
    api.answer("read_namespaced_service", api_error(404, "not found"))
    api.answer("create_namespaced_service", {})
    first = ServiceSelection(TO_B.selector, {"edgecast.io/model-id": "model-b"})

    point_service(api.kube(), service_body(), first, conflict_retries=0)

    ((_, kwargs),) = api.called("create_namespaced_service")
    assert kwargs["body"]["metadata"]["annotations"] == {
        "edgecast.io/node": "edge-1",
        "edgecast.io/model-id": "model-b",
    }


def test_restore_puts_the_old_selector_back(api: RecordedApi):
    api.answer("read_namespaced_service", load("service-selecting-model-b.yaml"))
    api.answer("patch_namespaced_service", {})

    done = restore_service(api.kube(), SERVICE, BACK_TO_A, "model-a", conflict_retries=1)

    assert done == "Service predictor-edge-1 selects model model-a again"
    ((_, kwargs),) = api.called("patch_namespaced_service")
    assert kwargs["body"]["metadata"]["resourceVersion"] == "4890"


def test_restore_reports_what_it_could_not_do(api: RecordedApi):
    api.answer("read_namespaced_service", load("service-selecting-model-b.yaml"))
    api.answer("patch_namespaced_service", api_error(403, "cannot patch"))

    done = restore_service(api.kube(), SERVICE, BACK_TO_A, "model-a", conflict_retries=1)

    assert done.startswith(
        "Service predictor-edge-1 could NOT be switched back to model model-a (403 Forbidden: "
        "cannot patch): set its selector to {"
    )
    assert restore_service(api.kube(), SERVICE, None, None, conflict_retries=1) == (
        "Service predictor-edge-1 was created by this switch and is left without endpoints "
        "(the rollout Role cannot delete Services)"
    )


@pytest.mark.parametrize(
    ("found", "converged"),
    [(("old-pod",), False), (("both-pods",), False), (("new-pod",), True), ((), False)],
)
def test_endpoints_converge_on_the_new_pods_alone(found, converged):
    assert endpoints_converged(slices(*found), {NEW_POD: "10.42.0.23"}) is converged


def test_a_new_pod_not_ready_or_known_by_address_only():
    not_ready = slices("new-pod")
    next(iter(not_ready.values()))["endpoints"][0]["conditions"]["ready"] = False
    assert not endpoints_converged(not_ready, {NEW_POD: "10.42.0.23"})
    by_address = slices("new-pod")
    del next(iter(by_address.values()))["endpoints"][0]["targetRef"]
    assert endpoints_converged(by_address, {NEW_POD: "10.42.0.23"})
    assert not endpoints_converged(by_address, {NEW_POD: ""})


def test_endpoints_are_described_by_pod_and_conditions():
    assert describe_endpoints(slices("both-pods")) == (
        f"{OLD_POD} (ready=True, serving=True, terminating=False); "
        f"{NEW_POD} (ready=True, serving=True, terminating=False)"
    )
    assert describe_endpoints({}) == "none"


def test_the_endpoint_wait_watches_the_services_slices(api: RecordedApi):
    api.answer("list_namespaced_endpoint_slice", listing(*slices("new-pod").values()))

    wait_endpoints(api.kube(), SERVICE, {NEW_POD: "10.42.0.23"}, timeout=5)

    ((_, kwargs),) = api.called("list_namespaced_endpoint_slice")
    assert kwargs["label_selector"] == "kubernetes.io/service-name=predictor-edge-1"


def test_the_endpoint_wait_names_the_last_endpoints(api: RecordedApi):
    api.answer("list_namespaced_endpoint_slice", listing(*slices("both-pods").values()))

    with pytest.raises(WatchTimeout) as timeout:
        wait_endpoints(api.kube(), SERVICE, {NEW_POD: "10.42.0.23"}, timeout=0)

    assert str(timeout.value) == (
        "the EndpointSlices of Service edgecast/predictor-edge-1 did not converge within 0s "
        f"(waited for ready endpoints of the new pods {NEW_POD} only, at least one); last "
        f"endpoints: {OLD_POD} (ready=True, serving=True, terminating=False); {NEW_POD} "
        "(ready=True, serving=True, terminating=False)"
    )


def test_the_service_must_answer_the_model_several_times_in_a_row(api: RecordedApi):
    api.answer(
        "connect_get_namespaced_service_proxy_with_path",
        {"model_id": "model-a"},
        {"model_id": "model-b"},
        {"model_id": "model-b"},
    )

    verify_service(api.kube(), SERVICE, "model-b", in_a_row=2, timeout=5)

    calls = api.called("connect_get_namespaced_service_proxy_with_path")
    assert len(calls) == 3
    assert calls[0][0] == ("predictor-edge-1:http",)
    assert calls[0][1]["path"] == "v1/model"


def test_a_service_that_keeps_answering_another_model_fails_with_its_last_answer(api):
    api.answer("connect_get_namespaced_service_proxy_with_path", {"model_id": "model-a"})

    with pytest.raises(CheckFailed) as failure:
        verify_service(api.kube(), SERVICE, "model-b", in_a_row=3, timeout=0)

    assert str(failure.value) == (
        "Service edgecast/predictor-edge-1 did not answer GET /v1/model with model_id 'model-b' "
        "3 times in a row within 0s; last answer: model_id 'model-a'"
    )


def test_a_proxy_error_is_the_last_answer(api: RecordedApi):
    api.answer(
        "connect_get_namespaced_service_proxy_with_path",
        api_error(503, body='no endpoints available for service "predictor-edge-1"'),
    )

    with pytest.raises(CheckFailed, match="last answer: 503 Service Unavailable: no endpoints"):
        verify_service(api.kube(), SERVICE, "model-b", in_a_row=1, timeout=0)
