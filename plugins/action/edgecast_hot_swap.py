"""Action ``edgecast_hot_swap``: switch a running predictor to a model of its store.

Thin: the work is ``edgecast.rollout.hotswap.hot_swap``. Runs on the controller, which must
reach the predictor's URL; the admin token is a ``no_log`` argument and never echoed.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase

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


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(
            argument_spec={
                "url": {"type": "str", "required": True},
                "token": {"type": "str", "no_log": True},
                "model_id": {"type": "str"},
                "query": {"type": "bool", "default": False},
                "timeout": {"type": "float", "default": 120.0},
            }
        )
        from edgecast.rollout.hotswap import HotSwapError, hot_swap, serving_model

        url = args["url"].rstrip("/")
        try:
            if args["query"]:
                serving = serving_model(url)
                previous = serving.get("previous") or {}
                result.update(
                    changed=False,
                    model_id=serving["model_id"],
                    previous_model_id=previous.get("model_id"),
                )
                return result
            if not args["token"]:
                result.update(failed=True, msg="token is required to switch models")
                return result
            if self._task.check_mode:
                current = str(serving_model(url)["model_id"])
                wanted = args["model_id"]
                result.update(
                    changed=wanted is None or wanted != current,
                    model_id=wanted or "(previous)",
                    previous_model_id=current,
                    phases={},
                    msg=(
                        f"would switch from {current} to {wanted or 'the previous model'}"
                        if wanted is None or wanted != current
                        else f"already serving {current}"
                    ),
                )
                return result
            swapped = hot_swap(url, args["token"], args["model_id"], timeout=args["timeout"])
        except HotSwapError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        result.update(
            changed=swapped.changed,
            model_id=swapped.model_id,
            previous_model_id=swapped.previous_model_id,
            phases={name: round(value, 3) for name, value in swapped.phases.items()},
            msg=(
                f"serving {swapped.model_id} (was {swapped.previous_model_id})"
                if swapped.changed
                else f"already serving {swapped.model_id}"
            ),
        )
        return result
