"""Action ``edgecast_predictor_status``: what a node's predictor serves and how well, read twice.

Thin: the row is ``edgecast.status.node_status`` of two reads, ``interval`` seconds apart, of
the predictor's ``/v1/model`` and ``/metrics``, either at a URL (the embedded default) or through
the API server's proxy of the node's Service (k3s; the rollout Role allows it). A predictor that
cannot be read gives a row that says why, not a failed task: the status of the rest of the fleet
is still worth printing. Read-only; check mode reads the same.
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
module: edgecast_predictor_status
short_description: Read what a node's predictor serves, and how it served over an interval
description:
  - Reads the predictor's C(GET /v1/model) and C(GET /metrics) twice, O(interval) seconds
    apart, and returns one row of the fleet status table.
  - With O(url) the predictor is read directly; otherwise through the API server's proxy of
    the node's predictor Service (the namespace-scoped rollout Role's C(services/proxy) get),
    and the Service's record of the previous model is read too.
  - Never fails on a predictor that does not answer; the row's C(error) says why.
options:
  url:
    description: The predictor's base URL (C(http://127.0.0.1:8080)); omit on k3s.
    type: str
  kubeconfig:
    description: Path of a kubeconfig on the controller (as edgecast_predictor_info).
    type: path
  context:
    description: Context of O(kubeconfig) to use; its current context when omitted.
    type: str
  namespace:
    description: Namespace of the predictor objects.
    type: str
    default: edgecast
  node:
    description: The node's name (its Kubernetes name on k3s).
    type: str
    required: true
  profile:
    description: The node's device profile (rpi, jetson, or what the inventory says).
    type: str
    default: ""
  interval:
    description: Seconds between the two reads; the table's request figures cover them.
    type: float
    default: 5
  timeout:
    description: Seconds each read may take.
    type: float
    default: 10
"""

RETURN = r"""
status:
  description:
    - The row - node, profile, runtime, model_id, since, previous_model_id,
      parity_max_abs_diff, ready, interval_seconds, requests, errors_5xx, p99_ms, live_mae_7d,
      and error (null, or why the predictor could not be read).
  type: dict
  returned: always
"""

ARGUMENT_SPEC: dict[str, Any] = {
    **EdgecastPlugin.kube_arguments(),
    "url": {"type": "str"},
    "namespace": {"type": "str", "default": "edgecast"},
    "node": {"type": "str", "required": True},
    "profile": {"type": "str", "default": ""},
    "interval": {"type": "float", "default": 5.0},
    "timeout": {"type": "float", "default": 10.0},
}


class ActionModule(EdgecastPlugin.ControllerAction):
    argument_spec = ARGUMENT_SPEC

    def act(self, args: dict[str, Any]) -> dict[str, Any]:
        plugin = "edgecast_predictor_status"
        status = EdgecastPlugin.require(plugin, "edgecast.status")
        node, profile = args["node"], args["profile"]
        if args["interval"] < 0 or args["timeout"] <= 0:
            return {"failed": True, "msg": "interval must be >= 0 and timeout > 0 seconds"}
        previous = None
        if args["url"]:
            read = status.http_reader(args["url"], args["timeout"])
            errors: tuple[type[BaseException], ...] = (status.StatusReadError,)
            apis = None
        else:
            kube = EdgecastPlugin.require(plugin, "edgecast.deploy.kube", extra="deploy")
            nodestate = EdgecastPlugin.require(plugin, "edgecast.deploy.nodestate", extra="deploy")
            try:
                apis = kube.connect(args["kubeconfig"], args["context"])
            except kube.KubeConfigError as exc:
                return {"failed": True, "msg": str(exc)}
            namespaced = kube.NamespacedApi(apis, args["namespace"], args["timeout"])
            errors = (*kube.API_ERRORS, ValueError)
            try:
                info = nodestate.predictor_info(nodestate.read_node_state(namespaced, node))
                previous = info.previous_model_id
            except errors as exc:
                apis.close()
                return self._unread(status, node, profile, kube.api_reason(exc))
            read = status.service_reader(namespaced, info.service)
        try:
            first, second = status.read_twice(read, args["interval"])
        except errors as exc:
            reason = str(exc) if args["url"] else kube.api_reason(exc)
            return self._unread(status, node, profile, reason)
        finally:
            if apis is not None:
                apis.close()
        row = status.node_status(node, profile, first, second, previous_model_id=previous)
        return {"changed": False, "status": row.to_dict(), "msg": _summary(row)}

    @staticmethod
    def _unread(status: Any, node: str, profile: str, reason: str) -> dict[str, Any]:
        row = status.NodeStatus(node=node, profile=profile, error=f"not read: {reason}")
        return {"changed": False, "status": row.to_dict(), "msg": row.error}


def _summary(row: Any) -> str:
    return f"{row.node} serves {row.model_id} ({'ready' if row.ready else 'not ready'})"
