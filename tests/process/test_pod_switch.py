"""Pod switching and the deploy plugins against FakeKubernetesApi, a fake Kubernetes API server.

The fake is not Kubernetes: it is an HTTP server on 127.0.0.1 with the REST endpoints, watch
streams, optimistic concurrency, Role checks and controller behaviour that the switch relies on,
so the official ``kubernetes`` client runs unchanged from kubeconfig to watch parsing. Timeouts
are a few seconds here; on a cluster they are minutes.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from edgecast.deploy.kube import KubeApis, NamespacedApi, connect
from edgecast.deploy.manifests import MODEL_ID_ANNOTATION, MODEL_LABEL, PredictorSpec, names_for
from edgecast.deploy.manifests import render as render_objects
from edgecast.deploy.nodestate import (
    PREVIOUS_MODEL_ANNOTATION,
    PredictorInfo,
    predictor_info,
    read_node_state,
)
from edgecast.deploy.podswitch import PHASES, PodSwitchError, Timeouts, plan_switch, pod_switch
from edgecast_harness.fake_kube_api import FakeKubernetesApi
from edgecast_harness.paths import REPO
from edgecast_harness.playbook import playbook_python, run_playbook, without_edgecast

NAMESPACE = "edgecast"
NODE = "edge-1"
FAST = Timeouts(ready=3.0, endpoints=3.0, verify=1.0, cleanup=3.0, request=5.0)


def spec(model_id: str, node: str = NODE, image: str = "edgecast-predictor:test") -> PredictorSpec:
    return PredictorSpec(node=node, model_id=model_id, image=image)


def deployment_name(model_id: str, node: str = NODE) -> str:
    return names_for(node, model_id).deployment


SERVICE = names_for(NODE, "any").service


def info(apis: KubeApis, node: str = NODE) -> PredictorInfo:
    return predictor_info(read_node_state(NamespacedApi(apis, NAMESPACE, 5.0), node))


@pytest.fixture
def fake() -> Iterator[FakeKubernetesApi]:
    with FakeKubernetesApi(NAMESPACE, ready_after=0.05, endpoints_delay=0.1) as api:
        yield api


@pytest.fixture
def apis(fake: FakeKubernetesApi, tmp_path: Path) -> Iterator[KubeApis]:
    clients = connect(str(fake.write_kubeconfig(tmp_path / "kubeconfig")))
    yield clients
    clients.close()


def serve(fake: FakeKubernetesApi, model_id: str, node: str = NODE) -> None:
    """The state a finished rollout leaves: the model's Deployment and the Service, ready."""
    objects = render_objects(spec(model_id, node))
    fake.seed(objects["deployment"], objects["service"])
    fake.settle()


def selected(fake: FakeKubernetesApi) -> str:
    service = fake.get("services", SERVICE)
    assert service is not None
    return service["spec"]["selector"][MODEL_LABEL]


def ready_endpoints(fake: FakeKubernetesApi) -> list[str]:
    slices = [fake.get("endpointslices", name) for name in fake.names("endpointslices")]
    return sorted(
        e["targetRef"]["name"]
        for s in slices
        if s is not None
        for e in s.get("endpoints") or []
        if e["conditions"]["ready"]
    )


def assert_old_kept(fake: FakeKubernetesApi, old: str, new: str) -> None:
    assert selected(fake) == old
    assert fake.get("deployments", deployment_name(old)) is not None
    assert fake.get("deployments", deployment_name(new)) is None
    fake.settle()
    assert ready_endpoints(fake), "the old pod must still be an endpoint"
    assert all(name.startswith(deployment_name(old)) for name in ready_endpoints(fake))


def test_switch_moves_the_service_to_the_new_pod_and_removes_the_old(fake, apis):
    serve(fake, "model-a")
    old_pods = fake.names("pods")

    result = pod_switch(apis, spec("model-b"), timeouts=FAST, drain_seconds=0.3)

    assert result.changed
    assert (result.model_id, result.previous_model_id) == ("model-b", "model-a")
    assert result.removed_deployments == (deployment_name("model-a"),)
    assert set(result.phases) == {*PHASES, "total"}
    assert result.phases["drain"] >= 0.3
    parts = [v for k, v in result.phases.items() if k != "total"]
    # each figure is rounded to the millisecond: their sum may pass the total by half of one each
    assert result.phases["total"] >= sum(parts) - 0.0005 * len(parts)
    assert result.warnings == ()
    assert selected(fake) == "model-b"
    annotations = fake.get("services", SERVICE)["metadata"]["annotations"]
    assert annotations[MODEL_ID_ANNOTATION] == "model-b"
    assert annotations[PREVIOUS_MODEL_ANNOTATION] == "model-a"
    assert fake.names("deployments") == [deployment_name("model-b")]
    # The switch ends once the old pod is terminating; its own graceful exit follows.
    left = set(fake.names("pods")) & set(old_pods)
    assert all(fake.get("pods", name)["metadata"].get("deletionTimestamp") for name in left)
    deadline = time.monotonic() + 10
    while set(fake.names("pods")) & set(old_pods) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not set(fake.names("pods")) & set(old_pods), "the old pods are gone"
    assert all(p.startswith(deployment_name("model-b")) for p in fake.names("pods"))
    assert ready_endpoints(fake) == fake.names("pods")
    assert all(f"/namespaces/{NAMESPACE}/" in path for _, path in fake.requests)


def test_waits_are_watches_on_the_api_conditions(fake, apis):
    serve(fake, "model-a")
    fake.behaviour("model-b").ready_after = 0.5
    fake.endpoints_delay = 0.5
    fake.pod_termination_seconds = 0.5

    pod_switch(apis, spec("model-b"), timeouts=FAST, drain_seconds=0, wait_removed=True)

    watched = {
        path.split("?")[0].rsplit("/", 1)[-1] for _, path in fake.requests if "watch=true" in path
    }
    assert watched == {"deployments", "endpointslices", "pods"}


def test_service_never_loses_its_ready_endpoint_during_the_switch(fake, apis):
    serve(fake, "model-a")
    before = ready_endpoints(fake)
    mark = fake.resource_version
    pod_switch(apis, spec("model-b"), timeouts=FAST, drain_seconds=0.2, wait_removed=True)

    history = fake.endpoint_history(SERVICE, since=mark)
    assert [name.rsplit("-", 2)[0] for name in before] == [deployment_name("model-a")]
    assert history, "the EndpointSlice changed during the switch"
    assert all(ready for ready in history), f"a moment without a ready endpoint: {history}"
    assert history[-1] == fake.names("pods")
    assert [name.rsplit("-", 2)[0] for name in history[-1]] == [deployment_name("model-b")]


def test_second_run_changes_nothing(fake, apis):
    serve(fake, "model-a")
    pod_switch(apis, spec("model-b"), timeouts=FAST, drain_seconds=0)
    writes = len(fake.writes())

    again = pod_switch(apis, spec("model-b"), timeouts=FAST, drain_seconds=0)

    assert not again.changed
    assert (again.model_id, again.previous_model_id) == ("model-b", "model-a")
    assert len(fake.writes()) == writes
    assert plan_switch(apis, spec("model-b")).changed is False


def test_plan_reports_the_switch_without_changing_anything(fake, apis):
    serve(fake, "model-a")

    plan = plan_switch(apis, spec("model-b"))

    assert plan.changed
    assert plan.previous_model_id == "model-a"
    assert plan.actions == (
        f"create Deployment {deployment_name('model-b')}",
        f"switch Service {SERVICE} from model model-a to model model-b",
        f"delete Deployment {deployment_name('model-a')}",
    )
    assert fake.writes() == []


def test_pod_never_ready_times_out_naming_the_wait_and_keeps_the_old_model(fake, apis):
    serve(fake, "model-a")
    fake.behaviour("model-b").outcome = "never_ready"

    with pytest.raises(PodSwitchError) as failure:
        pod_switch(apis, spec("model-b"), timeouts=Timeouts(ready=1.0, request=5.0))

    error = failure.value
    message = str(error)
    assert error.phase == "ready"
    assert error.reverted
    assert f"Deployment {NAMESPACE}/{deployment_name('model-b')} was not available within 1s" in (
        message
    )
    assert "waited for status.observedGeneration >= metadata.generation" in message
    assert "readyReplicas and availableReplicas == 1 and condition Available=True" in message
    assert "readyReplicas=0" in message
    assert "Available=False (MinimumReplicasUnavailable" in message
    assert "running but not ready" in message
    assert "predictor /readyz: loading model" in message
    assert "Readiness probe failed: HTTP probe failed with statuscode: 503" in message
    assert f"Deployment {deployment_name('model-b')} deleted" in message
    assert "still selecting model model-a" in message
    assert set(error.phases) >= {"create", "ready", "total"}
    assert_old_kept(fake, "model-a", "model-b")


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        ("crash_loop", "container predictor waiting: CrashLoopBackOff"),
        ("image_never_pull", "container predictor waiting: ErrImageNeverPull"),
    ],
)
def test_timeout_names_the_pods_reason(fake, apis, outcome, reason):
    serve(fake, "model-a")
    fake.behaviour("model-b").outcome = outcome

    with pytest.raises(PodSwitchError, match=reason) as failure:
        pod_switch(apis, spec("model-b"), timeouts=Timeouts(ready=1.0, request=5.0))

    assert "is not present with pull policy of Never" in str(failure.value) or (
        outcome == "crash_loop"
        and "last exit of predictor: Error (exit code 1)" in str(failure.value)
    )
    assert_old_kept(fake, "model-a", "model-b")


def test_pod_serving_the_wrong_model_is_removed_before_the_switch(fake, apis):
    serve(fake, "model-a")
    fake.behaviour("model-b").serves_model = "model-x"

    with pytest.raises(PodSwitchError) as failure:
        pod_switch(apis, spec("model-b"), timeouts=FAST)

    message = str(failure.value)
    assert failure.value.phase == "verify_pod"
    assert "answers GET /v1/model with model_id 'model-x', expected 'model-b'" in message
    assert not any(method == "PATCH" for method, _ in fake.requests)
    assert_old_kept(fake, "model-a", "model-b")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (500, "500 Internal Server Error: fake fault: InternalError on PATCH services"),
        (403, 'cannot patch resource "services" in API group "" in the namespace "edgecast"'),
    ],
)
def test_api_error_on_the_service_patch_reverts(fake, apis, code, expected):
    serve(fake, "model-a")
    fake.fail("PATCH", "services", code, times=1 if code == 500 else 100)

    with pytest.raises(PodSwitchError, match="failed in phase switch") as failure:
        pod_switch(apis, spec("model-b"), timeouts=FAST)

    assert expected in str(failure.value)
    assert failure.value.reverted
    assert "Service predictor-edge-1 selects model model-a again" in str(failure.value)
    assert_old_kept(fake, "model-a", "model-b")


def test_conflicting_service_write_is_retried_with_the_new_resource_version(fake, apis):
    serve(fake, "model-a")
    fake.concurrent_service_writes = 2

    result = pod_switch(apis, spec("model-b"), timeouts=FAST, drain_seconds=0)

    assert result.changed
    assert fake.conflicts == 2
    assert selected(fake) == "model-b"
    service = fake.get("services", SERVICE)
    assert service["metadata"]["annotations"]["example.com/concurrent-writer"] == "0"


def test_persistent_conflict_fails_and_keeps_the_old_model(fake, apis):
    serve(fake, "model-a")
    fake.concurrent_service_writes = 100

    with pytest.raises(PodSwitchError) as failure:
        pod_switch(apis, spec("model-b"), timeouts=FAST, conflict_retries=2)

    message = str(failure.value)
    assert "changed under every one of 3 attempts (409 Conflict on metadata.resourceVersion)" in (
        message
    )
    assert "the object has been modified" in message
    assert fake.conflicts == 3
    assert_old_kept(fake, "model-a", "model-b")


def test_endpoints_that_never_converge_switch_the_service_back(fake, apis):
    serve(fake, "model-a")
    fake.freeze_endpoints = True

    with pytest.raises(PodSwitchError) as failure:
        pod_switch(apis, spec("model-b"), timeouts=Timeouts(endpoints=1.0, request=5.0))

    message = str(failure.value)
    assert failure.value.phase == "endpoints"
    assert (
        "EndpointSlices of Service edgecast/predictor-edge-1 did not converge within 1s" in message
    )
    assert "waited for ready endpoints of the new pods" in message
    assert deployment_name("model-a") in message  # the last endpoints seen: still the old pod
    assert "selects model model-a again" in message
    annotations = fake.get("services", SERVICE)["metadata"]["annotations"]
    assert MODEL_ID_ANNOTATION not in annotations, "the annotations are put back as they were"
    fake.freeze_endpoints = False
    assert_old_kept(fake, "model-a", "model-b")


def test_service_answering_another_model_switches_back(fake, apis):
    serve(fake, "model-a")
    fake.service_proxy_model = "model-a"

    with pytest.raises(PodSwitchError) as failure:
        pod_switch(apis, spec("model-b"), timeouts=FAST, service_checks=2)

    message = str(failure.value)
    assert failure.value.phase == "verify_service"
    assert "did not answer GET /v1/model with model_id 'model-b' 2 times in a row" in message
    assert "last answer: model_id 'model-a'" in message
    assert_old_kept(fake, "model-a", "model-b")


def test_rollback_is_a_switch_back_to_the_previous_model(fake, apis):
    serve(fake, "model-a")
    pod_switch(apis, spec("model-b"), timeouts=FAST, drain_seconds=0)
    previous = info(apis).previous_model_id
    assert previous == "model-a"

    back = pod_switch(apis, spec(previous), timeouts=FAST, drain_seconds=0)

    assert back.changed
    assert (back.model_id, back.previous_model_id) == ("model-a", "model-b")
    assert selected(fake) == "model-a"
    assert fake.names("deployments") == [deployment_name("model-a")]
    now = info(apis)
    assert (now.model_id, now.previous_model_id) == ("model-a", "model-b")
    assert now.deployment == deployment_name("model-a")


def test_first_deployment_creates_the_service(fake, apis):
    result = pod_switch(apis, spec("model-a"), timeouts=FAST, drain_seconds=5)

    assert result.changed
    assert result.previous_model_id is None
    assert result.removed_deployments == ()
    assert result.phases["drain"] < 0.5, "nothing to drain"
    service = fake.get("services", SERVICE)
    assert service["spec"]["selector"] == names_for(NODE, "model-a").selector
    assert service["metadata"]["annotations"][MODEL_ID_ANNOTATION] == "model-a"
    assert PREVIOUS_MODEL_ANNOTATION not in service["metadata"]["annotations"]
    assert ready_endpoints(fake) == fake.names("pods")
    assert not pod_switch(apis, spec("model-a"), timeouts=FAST).changed


def test_first_deployment_failing_leaves_nothing_running(fake, apis):
    fake.behaviour("model-a").outcome = "never_ready"

    with pytest.raises(PodSwitchError, match="no Service predictor-edge-1 was created"):
        pod_switch(apis, spec("model-a"), timeouts=Timeouts(ready=1.0, request=5.0))

    assert fake.names("deployments") == []
    assert fake.names("services") == []


def test_expired_watch_is_relisted(fake, apis):
    serve(fake, "model-a")
    fake.behaviour("model-b").ready_after = 0.5  # so that the first wait needs a watch
    fake.expire_watches = 1

    result = pod_switch(apis, spec("model-b"), timeouts=FAST, drain_seconds=0)

    assert result.changed
    lists = [
        path
        for _, path in fake.requests
        if "fieldSelector=metadata.name" in path and "watch=true" not in path
    ]
    assert len(lists) == 2, "one list, then a fresh list after 410 Gone"


def test_leftover_deployment_with_another_spec_is_corrected(fake, apis):
    serve(fake, "model-a")
    stale = render_objects(spec("model-b", image="edgecast-predictor:old"))["deployment"]
    fake.seed(stale)
    fake.settle()

    result = pod_switch(apis, spec("model-b"), timeouts=FAST, drain_seconds=0)

    assert result.changed
    deployment = fake.get("deployments", deployment_name("model-b"))
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == "edgecast-predictor:test"
    assert deployment["metadata"]["generation"] == 2
    assert ("POST", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments") not in fake.requests
    assert selected(fake) == "model-b"


def test_leftover_deployment_with_the_same_spec_is_reused(fake, apis):
    serve(fake, "model-a")
    fake.seed(render_objects(spec("model-b"))["deployment"])
    fake.settle()

    result = pod_switch(apis, spec("model-b"), timeouts=FAST, drain_seconds=0)

    assert result.changed
    assert fake.writes()[0][0] == "PATCH", "no create and no update of the Deployment"
    assert fake.get("deployments", deployment_name("model-b"))["metadata"]["generation"] == 1


def test_each_node_is_read_on_its_own(fake, apis):
    serve(fake, "model-a", node="edge-1")
    serve(fake, "model-b", node="edge-2")

    found = {node: info(apis, node) for node in ("edge-1", "edge-2", "edge-3")}

    assert {node: i.model_id for node, i in found.items()} == {
        "edge-1": "model-a",
        "edge-2": "model-b",
        "edge-3": None,
    }
    assert found["edge-2"].deployment == deployment_name("model-b", node="edge-2")
    assert found["edge-2"].service == "predictor-edge-2"
    assert found["edge-2"].spec == spec("model-b", node="edge-2")


def test_in_place_brings_the_serving_predictor_to_a_changed_spec(fake, apis):
    """The deploy role's re-run before any rollout: another runtime and Service port for the
    model the Service selects are applied to its Deployment and Service, not refused."""
    first = pod_switch(apis, spec("model-a"), in_place=True, timeouts=FAST)
    assert (first.changed, first.previous_model_id) == (True, None)
    changed = PredictorSpec(
        node=NODE,
        model_id="model-a",
        image="edgecast-predictor:test",
        runtime="keras",
        service_port=9090,
    )
    with pytest.raises(PodSwitchError, match="serves model model-a but differs from the spec"):
        pod_switch(apis, changed, timeouts=FAST)

    result = pod_switch(apis, changed, in_place=True, timeouts=FAST)

    assert result.changed
    assert result.removed_deployments == ()
    deployment = fake.get("deployments", deployment_name("model-a"))
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--runtime") + 1] == "keras"
    assert deployment["metadata"]["generation"] == 2
    service = fake.get("services", SERVICE)
    assert service["spec"]["ports"][0]["port"] == 9090
    assert service["spec"]["selector"] == names_for(NODE, "model-a").selector
    assert info(apis).spec == changed
    assert not pod_switch(apis, changed, in_place=True, timeouts=FAST).changed


def test_fake_refuses_what_the_role_does_not_grant(apis):
    core = client.CoreV1Api(apis.core.api_client)
    with pytest.raises(ApiException) as nodes:
        core.list_node()
    assert nodes.value.status == 403
    assert "at the cluster scope" in json.loads(nodes.value.body)["message"]
    with pytest.raises(ApiException) as delete:
        core.delete_namespaced_service(SERVICE, NAMESPACE)
    assert delete.value.status == 403


def run_on_fake(fake: FakeKubernetesApi, tmp_path: Path, playbook: str, *extra: str) -> Any:
    """Runs ``playbook`` (its text) on localhost with a kubeconfig of ``fake``; what it saved in
    the file ``results`` names, as JSON."""
    path = tmp_path / "playbook.yml"
    path.write_text(playbook)
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
    results = tmp_path / "results.json"
    run_playbook(
        path,
        *("-i", "localhost,", "-c", "local"),
        *("-e", f"kubeconfig={kubeconfig}", "-e", f"results={results}", *extra),
        *("-e", f"ansible_python_interpreter={sys.executable}"),
        env={"ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")},
        timeout=180,
    )
    return json.loads(results.read_text())


PLAYBOOK = """\
- name: Pod switching through the action plugins
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Ask which model node edge-1 serves
      edgecast_predictor_info:
        kubeconfig: "{{ kubeconfig }}"
        node: edge-1
      register: before

    # check mode, a switch planned from the state read above, the same switch again (reading
    # for itself), a switch to a model whose pod answers with another model_id.
    - name: Switch node edge-1
      edgecast_pod_switch:
        kubeconfig: "{{ kubeconfig }}"
        namespace: edgecast
        spec: "{{ before.spec | combine({'model_id': item.model}) }}"
        state: "{{ before.state if item.state else omit }}"
        timeouts: {ready_timeout: 5, endpoints_timeout: 5, verify_timeout: 2}
        drain_seconds: 0
      check_mode: "{{ item.check }}"
      loop:
        - {model: model-b, check: true, state: true}
        - {model: model-b, check: false, state: true}
        - {model: model-b, check: false, state: false}
        - {model: model-c, check: false, state: false}
      register: runs
      ignore_errors: true

    - name: Ask again, in check mode
      edgecast_predictor_info:
        kubeconfig: "{{ kubeconfig }}"
        node: edge-1
      check_mode: true
      register: after

    - name: Keep the results
      ansible.builtin.copy:
        content: "{{ {'before': before, 'runs': runs.results, 'after': after} | to_json }}"
        dest: "{{ results }}"
        mode: "0644"
"""


def test_action_plugins_through_ansible_playbook(fake, tmp_path):
    serve(fake, "model-a")
    fake.behaviour("model-c").serves_model = "model-x"

    results = run_on_fake(fake, tmp_path, PLAYBOOK)
    before, after = results["before"], results["after"]
    planned, switched, again, refused = results["runs"]
    assert before["changed"] is False
    assert (before["model_id"], before["previous_model_id"]) == ("model-a", None)
    assert (before["deployment"], before["available"]) == (deployment_name("model-a"), True)
    assert before["spec"] == json.loads(json.dumps(asdict(spec("model-a"))))
    assert before["models_in_use"] == ["model-a"]
    assert before["msg"] == (
        f"node edge-1 in namespace edgecast: Service {SERVICE} selects model model-a "
        f"(Deployment {deployment_name('model-a')}, available)"
    )
    assert planned["changed"] is True
    assert planned["previous_model_id"] == "model-a"
    assert f"switch Service {SERVICE} from model model-a to model model-b" in planned["actions"]
    assert switched["changed"] is True
    assert (switched["model_id"], switched["previous_model_id"]) == ("model-b", "model-a")
    assert set(switched["phases"]) == {*PHASES, "total"}
    assert switched["removed_deployments"] == [deployment_name("model-a")]
    assert again["changed"] is False
    assert again["msg"] == f"Service {SERVICE} already selects model model-b"
    assert refused["failed"] is True
    assert refused["phase"] == "verify_pod"
    assert refused["reverted"] is True
    assert "answers GET /v1/model with model_id 'model-x', expected 'model-c'" in refused["msg"]
    assert (after["model_id"], after["previous_model_id"]) == ("model-b", "model-a")
    assert after["models_in_use"] == ["model-a", "model-b"]
    # The node's objects are read by each info task and by the switches not given the state;
    # the switch given it reads the Service once more, right before patching it.
    gets = [path for method, path in fake.requests if method == "GET"]
    assert len([p for p in gets if p.endswith(f"/services/{SERVICE}")]) == 2 + 1 + 2
    assert len([p for p in gets if "/deployments?labelSelector=" in p]) == 2 + 2
    assert_old_kept(fake, "model-b", "model-c")


CHECK_PLAYBOOK = """\
- name: Pod switching in check mode
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Plan a switch of node edge-1
      edgecast_pod_switch:
        kubeconfig: "{{ kubeconfig }}"
        spec: {node: edge-1, model_id: model-b, image: "{{ image }}"}
      check_mode: true
      register: planned
      ignore_errors: true

    - name: Keep the result
      ansible.builtin.copy:
        content: "{{ planned | to_json }}"
        dest: "{{ results }}"
        mode: "0644"
"""


def test_check_mode_fails_where_the_switch_would_refuse(fake, tmp_path):
    """The Service selects model-b already and its Deployment has another image: a switch keys
    Deployments by model_id and refuses, so check mode says so instead of planning an update."""
    serve(fake, "model-b")

    planned = run_on_fake(fake, tmp_path, CHECK_PLAYBOOK, "-e", "image=edgecast-predictor:other")

    assert planned["failed"] is True
    assert planned["msg"].startswith(
        f"Deployment {NAMESPACE}/{deployment_name('model-b')} serves model model-b but differs "
        "from the spec"
    )
    assert fake.writes() == []


def test_a_switch_that_need_not_wait_for_the_old_pods_ends_before_they_are_gone(fake, apis):
    serve(fake, "model-a")
    old_pods = fake.names("pods")
    fake.pod_termination_seconds = 3.0

    result = pod_switch(apis, spec("model-b"), timeouts=FAST, drain_seconds=0)

    assert result.warnings == ()
    assert result.phases["cleanup"] < 2.0
    assert set(old_pods) <= set(fake.names("pods")), "still finishing their graceful exit"
    assert all(fake.get("pods", name)["metadata"].get("deletionTimestamp") for name in old_pods)


def test_old_pods_outliving_the_cleanup_timeout_are_a_warning(fake, apis):
    serve(fake, "model-a")
    fake.pod_termination_seconds = 3.0
    limits = Timeouts(ready=3.0, endpoints=3.0, verify=1.0, cleanup=0.5, request=5.0)

    result = pod_switch(apis, spec("model-b"), timeouts=limits, drain_seconds=0, wait_removed=True)

    assert result.changed
    assert selected(fake) == "model-b"
    assert len(result.warnings) == 1
    assert f"old predictor pods {deployment_name('model-a')}-" in result.warnings[0]
    assert "were still present 0.5s after their Deployments were deleted" in result.warnings[0]


def test_unreadable_state_fails_before_any_change(fake, apis):
    serve(fake, "model-a")
    fake.fail("GET", "services", 403)

    with pytest.raises(PodSwitchError, match="reading the Service and Deployments of node edge-1"):
        pod_switch(apis, spec("model-b"), timeouts=FAST)

    assert fake.writes() == []


def test_pod_proxy_error_is_removed_before_the_switch(fake, apis):
    serve(fake, "model-a")
    fake.fail("GET", "pods/proxy", 503, message="error trying to reach service: dial tcp")

    with pytest.raises(PodSwitchError) as failure:
        pod_switch(apis, spec("model-b"), timeouts=FAST)

    assert failure.value.phase == "verify_pod"
    assert "did not answer GET /v1/model through the API server's pod proxy: 503" in str(
        failure.value
    )
    assert_old_kept(fake, "model-a", "model-b")


GUARDED_PLAYBOOK = """\
- name: The deploy plugins without edgecast on the controller
  hosts: localhost
  gather_facts: false
  tasks:
    - name: info
      edgecast_predictor_info: {node: edge-1}
      ignore_errors: true
    - name: switch
      edgecast_pod_switch: {spec: {node: edge-1, model_id: m, image: i}}
      ignore_errors: true
    - name: lookup
      ansible.builtin.debug:
        msg: "{{ lookup('edgecast_manifests', spec={}) }}"
      ignore_errors: true
"""


def test_without_edgecast_the_deploy_plugins_say_what_to_install(tmp_path):
    playbook = tmp_path / "guarded.yml"
    playbook.write_text(GUARDED_PLAYBOOK)
    env = without_edgecast(tmp_path / "hide-edgecast")

    run = run_playbook(playbook, "-i", "localhost,", "-c", "local", env=env, timeout=180)

    python = playbook_python()
    for task, plugin in [
        ("info", "edgecast_predictor_info"),
        ("switch", "edgecast_pod_switch"),
        ("lookup", "edgecast_manifests"),
    ]:
        assert next(run.results(task))["msg"].endswith(
            f"{plugin} needs the edgecast package with its 'deploy' extra in the controller's "
            f"Python, {python} (No module named 'edgecast'). Install it into that interpreter: "
            f"{python} -m pip install -e '{REPO / 'app'}[deploy]'"
        ), task


WAIT_PLAYBOOK = """\
- name: Waiting for the model a node's Service selects
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Wait on edge-1
      edgecast_predictor_info:
        kubeconfig: "{{ kubeconfig }}"
        node: "{{ item }}"
        wait: true
        wait_timeout: 5
      loop: [edge-1, edge-2]
      register: waits
      ignore_errors: true

    - name: Keep the results
      ansible.builtin.copy:
        content: "{{ waits.results | to_json }}"
        dest: "{{ results }}"
        mode: "0644"
"""


def test_the_info_action_waits_until_the_selected_model_is_available(fake, tmp_path):
    """edge-1's pod becomes ready seconds after its objects are seeded; edge-2 has no Service."""
    fake.behaviour("model-a").ready_after = 3.0
    objects = render_objects(spec("model-a"))
    fake.seed(objects["deployment"], objects["service"])

    waited, nothing = run_on_fake(fake, tmp_path, WAIT_PLAYBOOK)
    assert (waited["model_id"], waited["available"]) == ("model-a", True)
    assert waited["changed"] is False
    assert nothing["failed"] is True
    assert nothing["msg"] == (
        "no Deployment to wait for: node edge-2 in namespace edgecast has no predictor Service "
        "predictor-edge-2"
    )
    assert fake.writes() == []
    assert any("/deployments?" in path and "watch=true" in path for _, path in fake.requests), (
        "the wait is a watch"
    )
