"""One line per edge node at the end of a rollout: what it serves now, or why not.

Ansible's own recap counts tasks; after a fleet rollout a user wants to know which nodes took
the model, which one failed and why, and which were never reached because the run stopped (a
batch over ``rollout_max_fail_percentage``). This callback prints that, only for runs in which
the ``model_rollout`` role ran.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: edgecast_rollout_summary
type: aggregate
short_description: a per-node summary at the end of a model rollout
description:
  - After a run of rollout-model.yml (any play that ran the model_rollout role), prints one
    line per node of the rollout play - switched, already serving, failed (the task and its
    message), unreachable, or not reached because the run stopped first.
requirements:
  - enabled in ansible.cfg (callbacks_enabled)
"""

ROLE = "model_rollout"
SWITCH_TASKS = ("Switch the node's predictor to the model", "Switch the predictor to the model")


def _first_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "edgecast_rollout_summary"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._nodes: list[str] = []
        self._outcome: dict[str, str] = {}
        self._ran = False

    def v2_playbook_on_play_start(self, play: Any) -> None:
        roles = [role.get_name() for role in play.get_roles()]
        if ROLE not in roles:
            return
        self._ran = True
        inventory = play.get_variable_manager()._inventory
        # Every node of the play: a batch (serial) restricts the inventory to itself.
        for host in inventory.get_hosts(play.hosts, ignore_restrictions=True):
            if host.name not in self._nodes:
                self._nodes.append(host.name)

    @staticmethod
    def _in_role(result: Any) -> bool:
        role = getattr(result._task, "_role", None)
        return role is not None and role.get_name() == ROLE

    def v2_runner_on_ok(self, result: Any) -> None:
        if not self._in_role(result) or result._task.name not in SWITCH_TASKS:
            return
        outcome = result._result.get("msg") or "switched"
        self._outcome[result._host.get_name()] = f"ok: {_first_line(outcome)}"

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        if ignore_errors:
            return
        name = result._host.get_name()
        message = result._result.get("msg", "failed")
        self._outcome[name] = f'FAILED at "{result._task.name}": {_first_line(message)}'

    def v2_runner_on_unreachable(self, result: Any) -> None:
        name = result._host.get_name()
        message = result._result.get("msg", "")
        self._outcome[name] = f"UNREACHABLE (nothing changed there): {_first_line(message)}"

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if not self._ran or not self._nodes:
            return
        self._display.banner("ROLLOUT SUMMARY")
        for name in self._nodes:
            outcome = self._outcome.get(
                name, "not reached: the run stopped before this node (it keeps its model)"
            )
            self._display.display(f"{name}: {outcome}")
