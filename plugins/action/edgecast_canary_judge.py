"""Action ``edgecast_canary_judge``: promote a model beyond its canaries only on live evidence.

Thin: each canary's status row (``edgecast_predictor_status``) is judged by
``edgecast.canary.judge_canaries``; the task reports every verdict and whether the model may go
on. It never fails on a verdict (the playbook rolls the canaries back and then fails, with the
reasons).
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
module: edgecast_canary_judge
short_description: Judge canaries on live accuracy against the model they replaced
description:
  - Each canary must serve O(candidate), be ready, score O(previous) in shadow on the same
    requests over at least O(min_hours) hours, forecast those hours with a live MAE at most
    O(mae_tolerance) above the previous model's, answer no 5xx and keep its p99 within
    O(p99_ms).
  - What cannot be judged (no shadow, too little traffic, a node that did not answer or
    restarted, a canary without a row) fails.
options:
  canaries:
    description: The canaries, by inventory name.
    type: list
    elements: str
    required: true
  rows:
    description:
      - The C(status) of each canary's M(edgecast_predictor_status), by inventory name.
      - A canary missing here (unreachable, or a task failed on it) fails.
    type: dict
    required: true
  candidate:
    description: The model rolled out to the canaries.
    type: str
    required: true
  previous:
    description: The model it replaced.
    type: str
    required: true
  min_hours:
    description: Hours both models must have scored.
    type: int
    default: 24
  mae_tolerance:
    description: How much (a fraction) the new live MAE may be above the previous model's.
    type: float
    default: 0.0
  p99_ms:
    description: The highest p99 latency (ms) the canary may show.
    type: float
    default: 1000
"""

RETURN = r"""
promote:
  description: Whether every canary passed (and there was one).
  type: bool
  returned: always
verdicts:
  description: One per canary - node, passed, reason, new_mae, old_mae, hours.
  type: list
  elements: dict
  returned: always
"""

ARGUMENT_SPEC: dict[str, Any] = {
    "canaries": {"type": "list", "elements": "str", "required": True},
    "rows": {"type": "dict", "required": True},
    "candidate": {"type": "str", "required": True},
    "previous": {"type": "str", "required": True},
    "min_hours": {"type": "int", "default": 24},
    "mae_tolerance": {"type": "float", "default": 0.0},
    "p99_ms": {"type": "float", "default": 1000.0},
}


class ActionModule(EdgecastPlugin.ControllerAction):
    argument_spec = ARGUMENT_SPEC

    def act(self, args: dict[str, Any]) -> dict[str, Any]:
        canary = EdgecastPlugin.require("edgecast_canary_judge", "edgecast.canary")
        try:
            rules = canary.CanaryRules(args["min_hours"], args["mae_tolerance"], args["p99_ms"])
        except ValueError as exc:
            return {"failed": True, "msg": str(exc)}
        verdicts = canary.judge_canaries(
            args["canaries"], args["rows"], args["candidate"], args["previous"], rules
        )
        promote = bool(verdicts) and all(v.passed for v in verdicts)
        lines = [f"{v.node}: {'passed' if v.passed else 'FAILED'}: {v.reason}" for v in verdicts]
        return {
            "changed": False,
            "promote": promote,
            "verdicts": [v.to_dict() for v in verdicts],
            "msg": "; ".join(lines) or "no canary to judge",
        }
