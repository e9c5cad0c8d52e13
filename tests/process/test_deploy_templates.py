"""The predictor_deploy role's Kubernetes objects, rendered by the role's own tasks.

Each test runs a real ``ansible-playbook`` on localhost that includes one of the role's task
files and saves what it rendered: the namespace, the service accounts and the rollout's Role
(``templates/k8s/namespace.yaml.j2``, ``rbac.yaml.j2``), and the node's Deployment and Service
from the ``edgecast_manifests`` lookup. No Kubernetes API is contacted, so applying the objects
is not tested here.
"""

from __future__ import annotations

import json
import platform
import re
import sys
import tomllib
import uuid
from pathlib import Path

import jinja2
import yaml

from edgecast.deploy.manifests import PredictorSpec, render
from edgecast_harness.paths import REPO
from edgecast_harness.playbook import PlaybookRun, run_playbook

ROLE = REPO / "roles" / "predictor_deploy"

# What a rollout needs, and all it gets: (API group, resource, verb).
ROLLOUT_PERMISSIONS = {
    *(("apps", "deployments", v) for v in ("get", "list", "watch", "create", "patch", "delete")),
    *(("", "services", v) for v in ("get", "list", "watch", "create", "patch")),
    *(("", "pods", v) for v in ("get", "list", "watch")),
    ("", "pods/proxy", "get"),
    ("", "services/proxy", "get"),
    *(("discovery.k8s.io", "endpointslices", v) for v in ("get", "list", "watch")),
    *(("", "events", v) for v in ("get", "list", "watch")),
}


def run_role_tasks(
    tmp_path: Path, tasks_from: str, fact: str, *extra: str, role_vars: dict | None = None
) -> tuple[PlaybookRun, object]:
    """Includes ``tasks_from`` of the role on localhost; returns the run and ``fact`` saved."""
    saved = tmp_path / f"result-{uuid.uuid4().hex[:8]}.json"
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        json.dumps(
            [
                {
                    "name": "Render through the role",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Read the facts",
                            "ansible.builtin.setup": {"gather_subset": ["min"]},
                        },
                        {
                            "name": "Role tasks",
                            "ansible.builtin.include_role": {
                                "name": "predictor_deploy",
                                "tasks_from": tasks_from,
                            },
                            "vars": role_vars or {},
                        },
                        {
                            "name": "Save",
                            "ansible.builtin.copy": {
                                "content": f"{{{{ {fact} | to_json }}}}",
                                "dest": str(saved),
                                "mode": "0600",
                            },
                        },
                    ],
                }
            ]
        )
    )
    result = run_playbook(
        playbook,
        *("-i", "localhost,", "-c", "local"),
        *("-e", f"ansible_python_interpreter={sys.executable}", *extra),
        check=False,
        timeout=300,
    )
    return result, json.loads(saved.read_text()) if saved.exists() else None


def rendered(tmp_path: Path, tasks_from: str, fact: str, *extra: str, **role_vars: object):
    result, saved = run_role_tasks(tmp_path, tasks_from, fact, *extra, role_vars=role_vars)
    result.assert_ok()
    return saved


def permissions(role: dict) -> list[tuple[str, str, str]]:
    return [
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    ]


def test_rbac_grants_the_rollout_exactly_what_it_needs(tmp_path):
    objects = rendered(tmp_path, "cluster_objects.yml", "predictor_deploy_cluster_objects")
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert kinds == [
        ("Namespace", "edgecast"),
        ("ServiceAccount", "edgecast-predictor"),
        ("ServiceAccount", "edgecast-rollout"),
        ("Role", "edgecast-rollout"),
        ("RoleBinding", "edgecast-rollout"),
    ]
    # Nothing cluster-wide: every object but the namespace itself lives in the namespace.
    for obj in objects[1:]:
        assert obj["metadata"]["namespace"] == "edgecast", obj
    (role,) = [o for o in objects if o["kind"] == "Role"]
    granted = permissions(role)
    assert len(granted) == len(set(granted)), "a permission is granted twice"
    assert set(granted) == ROLLOUT_PERMISSIONS
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in role["rules"])
    assert "*" not in json.dumps(role["rules"])

    (binding,) = [o for o in objects if o["kind"] == "RoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "edgecast-rollout",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "edgecast-rollout", "namespace": "edgecast"}
    ]
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    assert accounts["edgecast-predictor"]["automountServiceAccountToken"] is False
    assert accounts["edgecast-rollout"]["automountServiceAccountToken"] is False


def test_the_namespace_and_names_follow_the_role_variables(tmp_path):
    objects = rendered(
        tmp_path,
        "cluster_objects.yml",
        "predictor_deploy_cluster_objects",
        "-e",
        "predictor_deploy_namespace=site-a",
        "-e",
        "predictor_deploy_rollout_service_account=site-a-rollout",
    )
    assert objects[0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "site-a",
            "labels": {
                "app.kubernetes.io/part-of": "edgecast",
                "app.kubernetes.io/managed-by": "edgecast",
            },
        },
    }
    assert {o["metadata"]["namespace"] for o in objects[1:]} == {"site-a"}
    (binding,) = [o for o in objects if o["kind"] == "RoleBinding"]
    assert binding["roleRef"]["name"] == "site-a-rollout"
    assert binding["subjects"][0] == {
        "kind": "ServiceAccount",
        "name": "site-a-rollout",
        "namespace": "site-a",
    }


def test_the_templates_are_plain_jinja2(tmp_path):
    """The same objects come out of plain Jinja2, as edgecast.deploy.manifests renders."""
    through_ansible = rendered(tmp_path, "cluster_objects.yml", "predictor_deploy_cluster_objects")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(REPO / "templates")),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    context = {
        "namespace": "edgecast",
        "predictor_service_account": "edgecast-predictor",
        "rollout_service_account": "edgecast-rollout",
    }
    plain = [
        *yaml.safe_load_all(env.get_template("k8s/namespace.yaml.j2").render(context)),
        *yaml.safe_load_all(env.get_template("k8s/rbac.yaml.j2").render(context)),
    ]
    assert plain == through_ansible


def image_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def test_the_lookup_renders_the_nodes_predictor_as_the_rollout_does(tmp_path):
    model_id = "sbn-b13-20261127-034844-a479dd58"
    manifests = rendered(
        tmp_path,
        "manifests.yml",
        "predictor_deploy_manifests",
        predictor_deploy_model_id=model_id,
        predictor_deploy_node_name="rpi-01",
    )
    expected = render(
        PredictorSpec(
            node="rpi-01", model_id=model_id, image=f"edgecast-predictor:0.1.0-{image_arch()}"
        )
    )
    assert manifests == json.loads(json.dumps(expected))
    container = manifests["deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"edgecast-predictor:0.1.0-{image_arch()}"
    assert manifests["deployment"]["spec"]["template"]["spec"]["volumes"][0]["hostPath"] == {
        "path": "/var/lib/edgecast/models",
        "type": "Directory",
    }
    assert manifests["service"]["metadata"]["name"] == "predictor-rpi-01"


def test_role_variables_reach_probes_and_shutdown(tmp_path):
    manifests = rendered(
        tmp_path,
        "manifests.yml",
        "predictor_deploy_manifests",
        "-e",
        json.dumps(
            {
                "predictor_deploy_prestop_seconds": 7,
                "predictor_deploy_termination_grace_seconds": 60,
                "predictor_deploy_startup_seconds": 120,
                "predictor_deploy_runtime": "keras",
                "predictor_deploy_service_type": "NodePort",
                "predictor_deploy_node_port": 30080,
                "predictor_deploy_admin_token_secret": "predictor-admin",
                "predictor_deploy_kernel_arch": "aarch64",
            }
        ),
        predictor_deploy_model_id="m1",
        predictor_deploy_node_name="jetson-01",
    )
    pod = manifests["deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "edgecast-predictor:0.1.0-arm64"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "7"]
    assert pod["terminationGracePeriodSeconds"] == 60
    assert container["livenessProbe"]["initialDelaySeconds"] == 120
    # Readiness is probed from the start (no startupProbe holds it back).
    assert (
        "startupProbe" not in container
        and "initialDelaySeconds" not in (container["readinessProbe"])
    )
    assert container["args"][container["args"].index("--runtime") + 1] == "keras"
    assert "--admin-token-file" in container["args"]
    assert manifests["service"]["spec"]["type"] == "NodePort"
    assert manifests["service"]["spec"]["ports"][0]["nodePort"] == 30080
    assert pod["automountServiceAccountToken"] is False


def test_an_unsafe_shutdown_timing_fails_with_the_reason(tmp_path):
    result, _ = run_role_tasks(
        tmp_path,
        "manifests.yml",
        "predictor_deploy_manifests",
        "-e",
        "predictor_deploy_termination_grace_seconds=10",
        role_vars={"predictor_deploy_model_id": "m1"},
    )
    assert result.rc != 0
    assert "termination_grace_seconds (10) must exceed" in result.stdout


def test_no_bundle_fails_with_what_to_do(tmp_path):
    result, _ = run_role_tasks(tmp_path, "source.yml", "predictor_deploy_source")
    assert result.rc != 0
    output = re.sub(r"\s+", " ", result.stdout)
    assert "No bundle to deploy" in output
    assert "-e predictor_deploy_bundle=PATH" in output


def test_the_image_version_is_the_package_version():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    version = tomllib.loads((REPO / "app" / "pyproject.toml").read_text())["project"]["version"]
    assert str(defaults["predictor_deploy_version"]) == version


def test_every_default_is_documented_and_validated():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    assert set(defaults) == set(options)
    lines = (ROLE / "defaults" / "main.yml").read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^predictor_deploy_\w+:", line):
            assert lines[index - 1].startswith("# "), f"{line} has no one-line comment"


def test_the_playbook_passes_the_syntax_check():
    run_playbook("playbooks/deploy-predictor.yml", "--syntax-check", timeout=300)


def test_the_playbook_skips_hosts_served_without_a_cluster():
    """On the embedded default (edgecast_deployment: local) nothing runs and nothing changes."""
    recap = run_playbook("playbooks/deploy-predictor.yml", timeout=300).recap("localhost")
    assert (recap["ok"], recap["changed"]) == (0, 0)
    assert recap["skipped"] > 0


def test_the_rollout_kubeconfig_is_built_from_the_token_secret(tmp_path):
    """The role's kubeconfig task, run as it is with the token Secret the API would return."""
    tasks = yaml.safe_load((ROLE / "tasks" / "rollout_kubeconfig.yml").read_text())
    (write,) = [
        task for task in tasks if task["name"] == "Write the rollout kubeconfig on the controller"
    ]
    assert write["no_log"] is True
    assert write["ansible.builtin.copy"]["mode"] == "0600"
    write = {k: v for k, v in write.items() if k not in ("delegate_to", "run_once", "become")}
    write["no_log"] = False
    admin = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "admin",
        "contexts": [
            {"name": "other", "context": {"cluster": "other", "user": "admin"}},
            {"name": "admin", "context": {"cluster": "k3s", "user": "admin"}},
        ],
        "clusters": [
            {"name": "other", "cluster": {"server": "https://192.0.2.99:6443"}},
            {"name": "k3s", "cluster": {"server": "https://192.0.2.1:6443"}},
        ],
        "users": [{"name": "admin", "user": {"token": "admin-token"}}],
    }
    (tmp_path / "admin.yaml").write_text(yaml.safe_dump(admin))
    written = tmp_path / "rollout.yaml"
    secret = {
        "token": "cm9sbG91dC10b2tlbg==",
        "ca.crt": "Q0EgZGF0YQ==",
        "namespace": "ZWRnZWNhc3Q=",
    }
    playbook = tmp_path / "kubeconfig.yml"
    playbook.write_text(
        json.dumps(
            [
                {
                    "name": "Write the kubeconfig",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "vars": {
                        "predictor_deploy_kubeconfig": str(tmp_path / "admin.yaml"),
                        "predictor_deploy_context": "",
                        "predictor_deploy_namespace": "edgecast",
                        "predictor_deploy_rollout_service_account": "edgecast-rollout",
                        "predictor_deploy_rollout_api_server": "",
                        "predictor_deploy_rollout_kubeconfig": str(written),
                        "predictor_deploy_rollout_token": {"resources": [{"data": secret}]},
                    },
                    "tasks": [write],
                }
            ]
        )
    )
    result = run_playbook(
        playbook,
        *("-i", "localhost,", "-c", "local"),
        *("-e", f"ansible_python_interpreter={sys.executable}"),
        timeout=300,
    )
    assert "rollout-token" not in result.stdout
    assert "rollout-token" not in json.dumps(result.events)
    assert written.stat().st_mode & 0o777 == 0o600
    kubeconfig = yaml.safe_load(written.read_text())
    assert kubeconfig["current-context"] == "edgecast-rollout"
    assert kubeconfig["contexts"] == [
        {
            "name": "edgecast-rollout",
            "context": {"cluster": "edgecast", "user": "edgecast-rollout", "namespace": "edgecast"},
        }
    ]
    assert kubeconfig["clusters"] == [
        {
            "name": "edgecast",
            "cluster": {
                "server": "https://192.0.2.1:6443",  # the admin kubeconfig's current context
                "certificate-authority-data": "Q0EgZGF0YQ==",
            },
        }
    ]
    assert kubeconfig["users"] == [{"name": "edgecast-rollout", "user": {"token": "rollout-token"}}]
    assert "admin-token" not in written.read_text()
