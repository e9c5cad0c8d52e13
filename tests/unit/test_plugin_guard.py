"""The controller-side helper the edgecast plugins share (plugins/module_utils/edgecast_plugin.py):
one guard, with one message, for a package missing from the controller's Python.

The plugins load it through Ansible's plugin loader, which only a real ``ansible-playbook`` run
shows working: the playbook runs on localhost (connection local), once as it is and once with
the edgecast package hidden from the controller's Python.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleActionFail

import edgecast.rollout.transfer
from edgecast_harness.paths import REPO
from edgecast_harness.playbook import (
    playbook_python,
    run_playbook,
    without_edgecast,
    write_play,
)
from edgecast_harness.ports import free_port

_spec = importlib.util.spec_from_file_location(
    "edgecast_plugin", REPO / "plugins" / "module_utils" / "edgecast_plugin.py"
)
_helper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helper)
EdgecastPlugin = _helper.EdgecastPlugin


def test_require_gives_the_module():
    module = EdgecastPlugin.require("edgecast_bundle_transfer", "edgecast.rollout.transfer")
    assert module is edgecast.rollout.transfer


def test_a_missing_package_fails_the_task_saying_what_to_install_where():
    with pytest.raises(AnsibleActionFail) as caught:
        EdgecastPlugin.require("edgecast_pod_switch", "edgecast_nowhere.podswitch", extra="deploy")
    python = sys.executable
    assert caught.value.message == (
        f"edgecast_pod_switch needs the edgecast package with its 'deploy' extra in the "
        f"controller's Python, {python} (No module named 'edgecast_nowhere'). Install it into "
        f"that interpreter: {python} -m pip install -e '{REPO / 'app'}[deploy]'"
    )


def test_each_plugin_gets_its_own_argument_definitions():
    first, second = EdgecastPlugin.bundle_arguments(), EdgecastPlugin.bundle_arguments()
    assert first == {
        "bundle": {"type": "path", "required": True},
        "public_key": {"type": "path"},
    }
    first["bundle"]["required"] = False
    assert second["bundle"]["required"] is True
    kube = EdgecastPlugin.kube_arguments()
    assert kube == {"kubeconfig": {"type": "path"}, "context": {"type": "str"}}
    kube["context"]["required"] = True
    assert "required" not in EdgecastPlugin.kube_arguments()["context"]


# A lookup plugin that takes the guard up as plugins/module_utils/edgecast_plugin.py says.
GUARDED_LOOKUP = """
from ansible import constants as C
from ansible.plugins.loader import PluginLoader
from ansible.plugins.lookup import LookupBase

EdgecastPlugin = PluginLoader(
    "EdgecastPlugin", "ansible.module_utils", C.DEFAULT_MODULE_UTILS_PATH, "module_utils"
).get("edgecast_plugin", class_only=True)


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        module = EdgecastPlugin.require(
            "edgecast_guarded", "edgecast.deploy.manifests", extra="deploy"
        )
        return [module.__name__]
"""


def plugin_tasks(port: int) -> list[dict]:
    """A task for each action plugin, which must get past its guard to fail for its own reason,
    and one that calls the lookup."""
    return [
        {
            "name": "verify",
            "edgecast_bundle_verify": {"bundle": "/nonexistent/bundle"},
        },
        {
            "name": "transfer",
            "edgecast_bundle_transfer": {"bundle": "/nonexistent/bundle", "keep": 0},
        },
        {
            "name": "hot_swap",
            "edgecast_hot_swap": {"url": f"http://127.0.0.1:{port}", "query": True},
        },
        {
            "name": "lookup",
            "ansible.builtin.debug": {"msg": "{{ lookup('edgecast_guarded') }}"},
        },
    ]


def run_plugins(tmp_path: Path, **env: str) -> dict[str, str]:
    """Runs the plugins' tasks on localhost; the message of each (why it failed)."""
    lookups = tmp_path / "lookup_plugins"
    lookups.mkdir()
    (lookups / "edgecast_guarded.py").write_text(GUARDED_LOOKUP)
    tasks = [{**task, "ignore_errors": True} for task in plugin_tasks(free_port())]
    playbook = write_play(tmp_path / "plugins.yml", "localhost", tasks)
    env = {"ANSIBLE_LOOKUP_PLUGINS": str(lookups), **env}
    run = run_playbook(playbook, "-i", "localhost,", "-c", "local", env=env, timeout=300)
    return {task["name"]: next(run.results(task["name"]))["msg"] for task in tasks}


def test_the_plugins_load_the_helper_in_a_real_run(tmp_path):
    msgs = run_plugins(tmp_path)
    assert msgs["verify"].startswith("bundle refused: /nonexistent/bundle")
    assert msgs["transfer"] == (
        "keep must be at least 1 (the bundle being installed), not 0; nothing changed on the node"
    )
    assert msgs["hot_swap"].startswith("cannot reach the predictor at http://127.0.0.1:")
    assert msgs["lookup"] == "edgecast.deploy.manifests"


def test_without_edgecast_every_plugin_says_what_to_install(tmp_path):
    msgs = run_plugins(tmp_path, **without_edgecast(tmp_path / "hide-edgecast"))
    python = playbook_python()
    for task, plugin in [
        ("verify", "edgecast_bundle_verify"),
        ("transfer", "edgecast_bundle_transfer"),
        ("hot_swap", "edgecast_hot_swap"),
    ]:
        assert msgs[task] == (
            f"{plugin} needs the edgecast package in the controller's Python, {python} "
            f"(No module named 'edgecast'). Install it into that interpreter: "
            f"{python} -m pip install -e {REPO / 'app'}"
        )
    assert msgs["lookup"].endswith(
        f"edgecast_guarded needs the edgecast package with its 'deploy' extra in the controller's "
        f"Python, {python} (No module named 'edgecast'). Install it into that interpreter: "
        f"{python} -m pip install -e '{REPO / 'app'}[deploy]'"
    )
