"""The Helm chart against the real Helm command (built from its Go module): it passes
``helm lint``, and ``helm template`` renders exactly the objects the Python renderer makes from
the same settings for the predictor_deploy role and the pod switch (``render`` and
``render_rbac``), for defaults and for every optional part; bad values are refused with a
message that names the value.
"""

from __future__ import annotations

from typing import Any

import pytest

from edgecast.deploy.manifests import PredictorSpec, render, render_rbac
from edgecast_harness.helm import CHART, helm, template_error, template_objects

pytestmark = pytest.mark.process

RELEASE = "edgecast"


def values(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "modelId": "sbn-b13-20261202-035418-791bcd08",
        "nodes": [{"name": "rpi4-01"}],
    }
    base.update(changes)
    return base


def python_objects(
    specs: list[PredictorSpec],
    namespace: str = "edgecast",
    accounts=("edgecast-predictor", "edgecast-rollout"),
) -> list[dict[str, Any]]:
    out = render_rbac(namespace, *accounts)
    for spec in specs:
        rendered = render(spec)
        out += [rendered["service"], rendered["deployment"]]
    return out


def by_kind_and_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    keyed = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert len(keyed) == len(objects), "two objects share a kind and a name"
    return keyed


def assert_same(chart: list[dict[str, Any]], python: list[dict[str, Any]]) -> None:
    got, want = by_kind_and_name(chart), by_kind_and_name(python)
    assert sorted(got) == sorted(want)
    for key, obj in want.items():
        assert got[key] == obj, key


def spec(**changes: Any) -> PredictorSpec:
    fields: dict[str, Any] = {
        "node": "rpi4-01",
        "model_id": "sbn-b13-20261202-035418-791bcd08",
        "image": "edgecast-predictor:0.1.0-arm64",
        "helm_release": RELEASE,
    }
    fields.update(changes)
    return PredictorSpec(**fields)


def test_helm_lint_passes_with_values_a_user_gives() -> None:
    done = helm("lint", str(CHART), "--strict", "--set", "modelId=m1", "--set", "nodes[0].name=a")
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


def test_defaults_render_the_python_objects_with_the_same_spec_annotation_text() -> None:
    chart = template_objects(values())
    assert_same(chart, python_objects([spec()]))
    deployment = next(o for o in chart if o["kind"] == "Deployment")
    annotations = deployment["metadata"]["annotations"]
    python = render(spec())["deployment"]["metadata"]["annotations"]
    # Exactly the same text: a later rollout or deploy compares the annotation as it is.
    assert annotations["edgecast.io/spec"] == python["edgecast.io/spec"]
    assert annotations["meta.helm.sh/release-name"] == RELEASE
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_every_optional_part_renders_as_the_python_renderer_does() -> None:
    chosen = values(
        nodes=[
            {"name": "Jetson_Nano.local"},  # not a DNS label: hashed as names_for does
            {"name": "rpi4-02", "modelId": "model with spaces/and:colons", "runtime": "keras"},
        ],
        runtime="litert",
        image="registry.local:5000/edgecast-predictor:0.2.0-arm64",
        imagePullPolicy="IfNotPresent",
        threads=2,
        port=9090,
        store={"hostPath": "/srv/models"},
        serviceAccounts={"predictor": "pred", "rollout": "roll"},
        service={"type": "NodePort", "port": 80, "nodePort": 30080},
        shutdown={
            "prestopSeconds": 3,
            "delaySeconds": 1.5,
            "drainTimeoutSeconds": 10.25,
            "terminationGraceSeconds": 30,
        },
        startupSeconds=120,
        adminTokenSecret="edgecast-admin",
        publicKeyConfigMap="edgecast-keys",
        resources={"requests": {"cpu": 1, "memory": "200Mi"}, "limits": {"memory": "512Mi"}},
    )
    common: dict[str, Any] = {
        "image": "registry.local:5000/edgecast-predictor:0.2.0-arm64",
        "image_pull_policy": "IfNotPresent",
        "threads": 2,
        "port": 9090,
        "store_host_path": "/srv/models",
        "service_account": "pred",
        "service_type": "NodePort",
        "service_port": 80,
        "node_port": 30080,
        "prestop_seconds": 3,
        "shutdown_delay_seconds": 1.5,
        "drain_timeout_seconds": 10.25,
        "termination_grace_seconds": 30,
        "startup_seconds": 120,
        "admin_token_secret": "edgecast-admin",
        "public_key_configmap": "edgecast-keys",
        "resources": {"requests": {"cpu": 1, "memory": "200Mi"}, "limits": {"memory": "512Mi"}},
    }
    specs = [
        spec(node="Jetson_Nano.local", **common),
        spec(node="rpi4-02", model_id="model with spaces/and:colons", runtime="keras", **common),
    ]
    chart = template_objects(chosen)
    assert_same(chart, python_objects(specs, accounts=("pred", "roll")))
    for obj in chart:
        if obj["kind"] == "Deployment":
            node = obj["metadata"]["annotations"]["edgecast.io/node"]
            want = render(next(s for s in specs if s.node == node))["deployment"]
            assert (
                obj["metadata"]["annotations"]["edgecast.io/spec"]
                == want["metadata"]["annotations"]["edgecast.io/spec"]
            )


def test_the_release_namespace_is_the_objects_namespace() -> None:
    chart = template_objects(values(), namespace="edge-site-2")
    assert {o["metadata"]["namespace"] for o in chart} == {"edge-site-2"}
    assert_same(chart, python_objects([spec(namespace="edge-site-2")], namespace="edge-site-2"))


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ({"runtime": "tensorrt"}, "/runtime"),
        ({"nodes": [{"runtime": "keras"}]}, "name"),
        ({"store": {"hostPath": "models"}}, "/store/hostPath"),
        ({"service": {"type": "ExternalName", "port": 80}}, "/service/type"),
        ({"threads": "four"}, "/threads"),
        ({"modelId": ""}, "no model to serve"),
        ({"service": {"type": "ClusterIP", "port": 80, "nodePort": 30080}}, "nodePort needs"),
        (
            {
                "shutdown": {
                    "prestopSeconds": 5,
                    "delaySeconds": 2.0,
                    "drainTimeoutSeconds": 20.0,
                    "terminationGraceSeconds": 27,
                }
            },
            "terminationGraceSeconds (27) must exceed",
        ),
        ({"replicas": 3}, "replicas"),
    ],
)
def test_bad_values_are_refused_with_a_message_naming_them(bad: dict, said: str) -> None:
    assert said in template_error(values(**bad))
