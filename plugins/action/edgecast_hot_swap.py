"""Action ``edgecast_hot_swap``: switch a running predictor to a model of its store.

Thin: the work is ``edgecast.rollout.hotswap.hot_swap``. Runs on the controller, which must
reach the predictor's URL; the admin token is a ``no_log`` argument and never echoed.
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
module: edgecast_hot_swap
short_description: Switch a running predictor to another model through its admin API
description:
  - Asks the predictor to load a model of its store; the predictor swaps only after the parity
    gate passes, and requests in flight finish on the model they started with.
  - No change when the predictor already serves the model.
options:
  url:
    description: Base URL of the predictor, as the controller reaches it.
    type: str
    required: true
  token:
    description: Admin bearer token of the predictor.
    type: str
    no_log: true
  model_id:
    description: Model to serve; omit to go back to the model served before the current one.
    type: str
  query:
    description: Only ask what the predictor serves (O(token) is then not needed).
    type: bool
    default: false
  timeout:
    description: Seconds to wait for the predictor's answer.
    type: float
    default: 120
"""

RETURN = r"""
model_id:
  description: The model served afterwards.
  type: str
  returned: always
previous_model_id:
  description: The model served before.
  type: str
  returned: always
phases:
  description: Seconds spent in each phase (swap, verify, total).
  type: dict
  returned: always
"""

ARGUMENT_SPEC: dict[str, Any] = {
    "url": {"type": "str", "required": True},
    "token": {"type": "str", "no_log": True},
    "model_id": {"type": "str"},
    "query": {"type": "bool", "default": False},
    "timeout": {"type": "float", "default": 120.0},
}


class ActionModule(EdgecastPlugin.ControllerAction):
    argument_spec = ARGUMENT_SPEC

    def act(self, args: dict[str, Any]) -> dict[str, Any]:
        hotswap = EdgecastPlugin.require("edgecast_hot_swap", "edgecast.rollout.hotswap")
        url = args["url"].rstrip("/")
        if not (args["query"] or args["token"]):
            return {"failed": True, "msg": "token is required to switch models"}
        try:
            if args["query"] or self._task.check_mode:
                plan = hotswap.plan_swap(url, args["model_id"])
                return self._query(plan) if args["query"] else self._plan(plan)
            swapped = hotswap.hot_swap(
                url, args["token"], args["model_id"], timeout=args["timeout"]
            )
        except hotswap.HotSwapError as exc:
            return {"failed": True, "msg": str(exc)}
        return {
            "changed": swapped.changed,
            "model_id": swapped.model_id,
            "previous_model_id": swapped.previous_model_id,
            "phases": {name: round(value, 3) for name, value in swapped.phases.items()},
            "msg": (
                f"serving {swapped.model_id} (was {swapped.previous_model_id})"
                if swapped.changed
                else f"already serving {swapped.model_id}"
            ),
        }

    @staticmethod
    def _query(plan: Any) -> dict[str, Any]:
        """What the predictor serves, and what it served before (the rollback target)."""
        return {"changed": False, "model_id": plan.serving, "previous_model_id": plan.served_before}

    @staticmethod
    def _plan(plan: Any) -> dict[str, Any]:
        """What a switch would change (check mode)."""
        wanted = plan.wanted or "the previous model"
        return {
            "changed": plan.changed,
            "model_id": plan.wanted or "(previous)",
            "previous_model_id": plan.serving,
            "phases": {},
            "msg": (
                f"would switch from {plan.serving} to {wanted}"
                if plan.changed
                else f"already serving {plan.serving}"
            ),
        }
