"""templates/k8s/ct-cronjob.yaml.j2: continuous training as a Kubernetes CronJob, the
counterpart of roles/ct_schedule's systemd timer, rendered and read back as API objects.

Every field is checked against the Kubernetes API's own models (the ``kubernetes`` client's
``openapi_types``), so a misspelt or misplaced key fails here rather than on a cluster.
"""

from __future__ import annotations

import re
from typing import Any

import jinja2
import kubernetes.client.models as k8s_models
import pytest
import yaml

from edgecast_harness.paths import REPO

REQUIRED = {
    "namespace": "edgecast-ct",
    "image": "registry.example/edgecast-controller:3.11",
    "project_claim": "edgecast-checkout",
    "inventory_secret": "edgecast-inventory",
    "ssh_secret": "edgecast-fleet-ssh",
}
MODELS = {"ServiceAccount": "V1ServiceAccount", "CronJob": "V1CronJob"}


def render(**context: Any) -> dict[str, dict[str, Any]]:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(REPO / "templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    text = env.get_template("k8s/ct-cronjob.yaml.j2").render({**REQUIRED, **context})
    return {obj["kind"]: obj for obj in yaml.safe_load_all(text) if obj}


def unknown_fields(value: Any, kind: str, path: str = "") -> list[str]:
    """The keys of ``value`` that the API's model ``kind`` (a type string) does not have."""
    if kind.lower().startswith("list["):
        item = kind[5:-1]
        return [bad for i, v in enumerate(value) for bad in unknown_fields(v, item, f"{path}[{i}]")]
    if kind.lower().startswith("dict(") or not hasattr(k8s_models, kind):
        return []
    model = getattr(k8s_models, kind)
    fields = {json_key: model.openapi_types[attr] for attr, json_key in model.attribute_map.items()}
    bad = [f"{path}.{key}" for key in value if key not in fields]
    for key, sub in value.items():
        if key in fields:
            bad += unknown_fields(sub, fields[key], f"{path}.{key}")
    return bad


def pod_spec(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return objects["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_every_field_is_one_the_api_knows() -> None:
    objects = render(env_secret="edgecast-ct-env", extra_args=["-e", "x=1"])
    assert sorted(objects) == ["CronJob", "ServiceAccount"]
    for kind, obj in objects.items():
        assert unknown_fields(obj, MODELS[kind]) == [], kind


def test_the_field_check_finds_a_misspelt_key_deep_down() -> None:
    objects = render()
    pod_spec(objects)["containers"][0]["securityContext"]["runAsNonroot"] = True
    assert unknown_fields(objects["CronJob"], "V1CronJob") == [
        ".spec.jobTemplate.spec.template.spec.containers[0].securityContext.runAsNonroot"
    ]


def test_cronjob_runs_one_cycle_at_a_time_on_the_schedule() -> None:
    cronjob = render()["CronJob"]
    spec = cronjob["spec"]
    assert re.fullmatch(r"\S+ \S+ \S+ \S+ \S+", spec["schedule"])
    assert spec["schedule"] == "0 3 * * 0"  # Sundays 03:00, as the timer's default
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["jobTemplate"]["spec"]["backoffLimit"] == 0
    assert pod_spec(render())["restartPolicy"] == "Never"
    assert render(schedule="30 2 * * 1-5")["CronJob"]["spec"]["schedule"] == "30 2 * * 1-5"


def test_the_container_runs_continuous_training_from_the_mounted_checkout() -> None:
    pod = pod_spec(render(trigger="drift", extra_args=["-e", 'ct_retrain_args="--epochs 10"']))
    (container,) = pod["containers"]
    assert container["command"] == [
        "/srv/edgecast/.venv/bin/ansible-playbook",
        "-i",
        "/etc/edgecast/inventory/hosts.yml",
        "/srv/edgecast/continuous-training.yml",
        "-e",
        "ct_trigger=drift",
        "-e",
        'ct_retrain_args="--epochs 10"',
    ]
    assert container["workingDir"] == "/srv/edgecast"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["project"]["mountPath"] == "/srv/edgecast"
    assert volumes["project"]["persistentVolumeClaim"]["claimName"] == "edgecast-checkout"
    assert mounts["inventory"]["readOnly"] and mounts["ssh"]["readOnly"]
    assert volumes["inventory"]["secret"]["secretName"] == "edgecast-inventory"
    assert volumes["ssh"]["secret"]["secretName"] == "edgecast-fleet-ssh"
    assert volumes["ssh"]["secret"]["defaultMode"] == 0o440
    assert "envFrom" not in container
    with_env = pod_spec(render(env_secret="edgecast-ct-env"))["containers"][0]
    assert with_env["envFrom"] == [{"secretRef": {"name": "edgecast-ct-env"}}]


def test_least_privilege() -> None:
    objects = render()
    account = objects["ServiceAccount"]
    pod = pod_spec(objects)
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}
    # No Role or binding: the cycle needs nothing from this cluster's API.
    assert not {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} & set(objects)


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_a_missing_required_value_is_refused(missing: str) -> None:
    context = {key: value for key, value in REQUIRED.items() if key != missing}
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(REPO / "templates")),
        undefined=jinja2.StrictUndefined,
    )
    # StrictUndefined: tojson of an undefined value raises TypeError, other uses UndefinedError.
    with pytest.raises((jinja2.UndefinedError, TypeError)):
        env.get_template("k8s/ct-cronjob.yaml.j2").render(context)
