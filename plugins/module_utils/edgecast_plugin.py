"""What edgecast's action and lookup plugins share on the controller: one guard for the Python
packages they need, their early import, the argument definitions several of them take, and the
base of the actions that run on the controller alone.

Controller side only; never sent to a node. Ansible makes ``ansible.module_utils`` importable only
in the modules it sends to nodes, and ``plugin_utils`` only inside collections, so a plugin outside
a collection loads this file with Ansible's own plugin loader, from the ``module_utils`` path that
ansible.cfg sets (``module_utils = plugins/module_utils``)::

    from ansible import constants as C
    from ansible.plugins.loader import PluginLoader

    EdgecastPlugin = PluginLoader(
        "EdgecastPlugin", "ansible.module_utils", C.DEFAULT_MODULE_UTILS_PATH, "module_utils"
    ).get("edgecast_plugin", class_only=True)

The loader imports the file once per process, as ``ansible.module_utils.edgecast_plugin``. The
file imports nothing of edgecast, so that it can say what to install when edgecast is missing.
"""

from __future__ import annotations

import contextlib
import importlib
import shlex
import sys
from abc import abstractmethod
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

# The edgecast package's source in the checkout these plugins belong to.
APP = Path(__file__).resolve().parents[2] / "app"


class ControllerAction(ActionBase):
    """An action that runs on the controller alone: no connection to the task's host, no files
    sent to it. ``act`` gets the task's arguments, checked against ``argument_spec``, and
    returns what the task reports."""

    TRANSFERS_FILES = False
    _requires_connection = False
    argument_spec: ClassVar[dict[str, dict[str, Any]]] = {}

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=self.argument_spec)
        result.update(self.act(args))
        return result

    @abstractmethod
    def act(self, args: dict[str, Any]) -> dict[str, Any]: ...


class EdgecastPlugin:
    """The shared pieces, as one class because Ansible's plugin loader hands out a class."""

    ControllerAction = ControllerAction

    @staticmethod
    def bundle_arguments() -> dict[str, dict[str, Any]]:
        """A bundle on the controller, and the key that must have signed it (a new copy for each
        plugin, which may add to it)."""
        return {
            "bundle": {"type": "path", "required": True},
            "public_key": {"type": "path"},
        }

    @staticmethod
    def kube_arguments() -> dict[str, dict[str, Any]]:
        """How a plugin reaches the node's API server: a kubeconfig on the controller and one of
        its contexts (a new copy for each plugin)."""
        return {
            "kubeconfig": {"type": "path"},
            "context": {"type": "str"},
        }

    @staticmethod
    def preload(module: str) -> None:
        """Imports ``module`` when the plugin is loaded, if it can be imported.

        Ansible's strategy loads an action plugin in its main process before it forks a worker
        for each task, so a module imported then (the Kubernetes client, seconds to import) is
        inherited by every later worker instead of imported again. Without the package nothing
        happens here: the task itself fails with :meth:`require`'s message.
        """
        with contextlib.suppress(ImportError):
            importlib.import_module(module)

    @staticmethod
    def require(plugin: str, module: str, extra: str = "") -> ModuleType:
        """``module`` imported into the controller's Python, or the task fails saying what to
        install into which interpreter (``extra``: the edgecast extra that brings it)."""
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            raise AnsibleActionFail(EdgecastPlugin.missing(plugin, exc, extra)) from None

    @staticmethod
    def missing(plugin: str, error: ImportError, extra: str = "") -> str:
        """The one message for a package missing from the controller's Python."""
        package = "the edgecast package" + (f" with its {extra!r} extra" if extra else "")
        source = f"{APP}[{extra}]" if extra else str(APP)
        python = sys.executable
        return (
            f"{plugin} needs {package} in the controller's Python, {python} ({error}). "
            f"Install it into that interpreter: "
            f"{shlex.quote(python)} -m pip install -e {shlex.quote(source)}"
        )
