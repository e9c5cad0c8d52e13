"""Action ``edgecast_drift_check``: whether the fleet forecasts worse live than on held-out data.

Thin: ``edgecast.drift.check`` over the nodes' status rows (``edgecast_predictor_status``).
Never fails on a verdict; continuous-training.yml retrains when it says ``drifted``.
"""

from __future__ import annotations

from typing import Any

from ansible import constants as C
from ansible.plugins.loader import PluginLoader

# Shared with the other edgecast plugins: see plugins/module_utils/edgecast_plugin.py.
EdgecastPlugin = PluginLoader(
    "EdgecastPlugin", "ansible.module_utils", C.DEFAULT_MODULE_UTILS_PATH, "module_utils"
).get("edgecast_plugin", class_only=True)

DOCUMENTATION = r"""
module: edgecast_drift_check
short_description: Say whether live accuracy drifted from the held-out accuracy
description:
  - A node has drifted when its serving model scored at least O(min_hours) live hours in the
    last 7 days and its live MAE there is above O(factor) times its bundle's held-out MAE.
options:
  rows:
    description: The C(status) of each node's M(edgecast_predictor_status).
    type: list
    elements: dict
    required: true
  factor:
    description: Live MAE over held-out MAE above which a node has drifted.
    type: float
    default: 1.3
  min_hours:
    description: Live hours a node must have scored to be judged.
    type: int
    default: 24
"""

RETURN = r"""
drifted:
  description: Whether any node drifted.
  type: bool
  returned: always
lines:
  description: One per node, saying why or why not.
  type: list
  elements: str
  returned: always
"""

ARGUMENT_SPEC: dict[str, Any] = {
    "rows": {"type": "list", "elements": "dict", "required": True},
    "factor": {"type": "float", "default": 1.3},
    "min_hours": {"type": "int", "default": 24},
}


class ActionModule(EdgecastPlugin.ControllerAction):
    argument_spec = ARGUMENT_SPEC

    def act(self, args: dict[str, Any]) -> dict[str, Any]:
        drift = EdgecastPlugin.require("edgecast_drift_check", "edgecast.drift")
        try:
            report = drift.check(args["rows"], args["factor"], args["min_hours"])
        except ValueError as exc:
            return {"failed": True, "msg": str(exc)}
        return {
            "changed": False,
            "drifted": report.drifted,
            "lines": report.lines,
            "msg": "; ".join(report.lines) or "no edge node to judge",
        }
