"""Why a new pod is not ready, in one line, from recorded pods, events and /readyz answers."""

from __future__ import annotations

from recorded import RecordedApi, api_error, listing, load

from edgecast.deploy.diagnostics import (
    container_state,
    describe_pods,
    last_warnings,
    pod_state,
    readyz_refusal,
    unmet_conditions,
)

SELECTOR = {
    "app.kubernetes.io/name": "edgecast-predictor",
    "edgecast.io/model": "model-b",
    "edgecast.io/node": "edge-1",
}


def pods() -> list[dict]:
    return load("pods-not-ready.yaml")["items"]


def test_what_each_pod_is_doing():
    probing, crashing, missing_image = (pod_state(pod) for pod in pods())

    assert probing == [
        "pod predictor-edge-1-af30308345-5c8d9f7b6c-x7k2p: phase Running",
        "container predictor running but not ready (readiness probe failing)",
    ]
    assert crashing[1].startswith("container predictor waiting: CrashLoopBackOff (back-off 40s")
    assert crashing[2:] == ["last exit of predictor: Error (exit code 1)", "3 restarts"]
    assert missing_image[1] == (
        'container predictor waiting: ErrImageNeverPull (Container image "edgecast-predictor:test" '
        "is not present with pull policy of Never)"
    )


def test_a_terminating_pod_and_a_terminated_container():
    pod = load("pod-ready.yaml")
    pod["metadata"]["deletionTimestamp"] = "2026-03-02T10:20:00Z"
    assert pod_state(pod)[1] == "terminating"
    ended = {"name": "predictor", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
    assert container_state(ended) == ["container predictor terminated: OOMKilled (exit code 137)"]


def test_only_conditions_that_fail_with_a_reason_are_named():
    assert unmet_conditions(pods()[0]) == [
        "Ready=False (ContainersNotReady: containers with unready status: [predictor])",
        "ContainersReady=False (ContainersNotReady: containers with unready status: [predictor])",
    ]
    assert unmet_conditions(load("pod-ready.yaml")) == []


def test_the_last_three_warnings_in_time_order_with_their_counts():
    assert last_warnings(load("events-pod-not-ready.yaml")["items"]) == [
        "event FailedScheduling: 0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 "
        "nodes are available: 1 No preemption victims found for incoming pod.",
        "event ProbeWarning: Startup probe warning: slow response",
        "event Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 503 (x27)",
    ]


def test_the_predictors_own_reason_from_a_503_readyz():
    refusal = api_error(
        503, body='{"ready": false, "reason": "parity: max |diff| 0.31 kWh > tolerance 0.001"}'
    )
    assert readyz_refusal(refusal) == (
        "predictor /readyz: parity: max |diff| 0.31 kWh > tolerance 0.001"
    )
    unreachable = api_error(503, body="error trying to reach service: dial tcp 10.42.0.23:8080")
    assert readyz_refusal(unreachable) == (
        "predictor /readyz not reachable (503 Service Unavailable: error trying to reach "
        "service: dial tcp 10.42.0.23:8080)"
    )


def test_describe_pods_reads_readyz_and_events_of_running_pods_only(api: RecordedApi):
    api.answer("list_namespaced_pod", load("pods-not-ready.yaml"))
    api.answer(
        "connect_get_namespaced_pod_proxy_with_path",
        api_error(503, body='{"ready": false, "reason": "loading model"}'),
    )
    api.answer("list_namespaced_event", load("events-pod-not-ready.yaml"), listing())

    text = describe_pods(api.kube(), SELECTOR, 8080)

    probing, crashing, missing_image = text.split("; ")
    assert probing == (
        "pod predictor-edge-1-af30308345-5c8d9f7b6c-x7k2p: phase Running, container predictor "
        "running but not ready (readiness probe failing), predictor /readyz: loading model, "
        "Ready=False (ContainersNotReady: containers with unready status: [predictor]), "
        "ContainersReady=False (ContainersNotReady: containers with unready status: "
        "[predictor]), event FailedScheduling: 0/1 nodes are available: 1 Insufficient memory. "
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod., "
        "event ProbeWarning: Startup probe warning: slow response, event Unhealthy: Readiness "
        "probe failed: HTTP probe failed with statuscode: 503 (x27)"
    )
    assert "predictor /readyz" in crashing, "a crash-looping pod is Running, so it is asked"
    assert "/readyz" not in missing_image, "a Pending pod has no predictor to ask"
    (proxy, _) = api.called("connect_get_namespaced_pod_proxy_with_path")
    assert proxy[0] == ("predictor-edge-1-af30308345-5c8d9f7b6c-x7k2p:8080",)
    assert proxy[1]["path"] == "readyz"
    _, kwargs = api.called("list_namespaced_pod")[0]
    assert kwargs["label_selector"] == (
        "app.kubernetes.io/name=edgecast-predictor,edgecast.io/model=model-b,"
        "edgecast.io/node=edge-1"
    )
    _, kwargs = api.called("list_namespaced_event")[0]
    assert kwargs["field_selector"] == (
        "involvedObject.kind=Pod,involvedObject.name=predictor-edge-1-af30308345-5c8d9f7b6c-x7k2p"
    )


def test_reads_that_fail_are_reported_not_raised(api: RecordedApi):
    api.answer("list_namespaced_pod", api_error(403, "pods is forbidden"))
    assert describe_pods(api.kube(), SELECTOR, 8080) == (
        "pods could not be read (403 Forbidden: pods is forbidden)"
    )

    api.answers.clear()
    api.answer("list_namespaced_pod", listing())
    assert describe_pods(api.kube(), SELECTOR, 8080) == (
        "no pod exists for the Deployment's selector (see the Deployment's events)"
    )

    api.answers.clear()
    api.answer("list_namespaced_pod", listing(pods()[0]))
    api.answer("connect_get_namespaced_pod_proxy_with_path", {"ready": True, "model_id": "m"})
    api.answer("list_namespaced_event", api_error(403, "events is forbidden"))
    text = describe_pods(api.kube(), SELECTOR, 8080)
    assert "predictor /readyz now answers ready" in text
    assert text.endswith("events could not be read (403 Forbidden: events is forbidden)")
