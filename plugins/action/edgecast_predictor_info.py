"""Action ``edgecast_predictor_info``: which model a node's predictor serves, read from the API.

Thin: the answer is ``edgecast.deploy.nodestate.predictor_info`` of one read of the node's
Service and Deployments. The deploy role and the rollout both ask here, and pass the objects
read (``state``) on to ``edgecast_pod_switch``, which then plans without reading them again.
Read-only, like kubernetes.core's ``_info`` modules: it never changes anything, in check mode
or not.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ansible import constants as C
from ansible.plugins.loader import PluginLoader

# Shared with the other edgecast plugins: see plugins/module_utils/edgecast_plugin.py.
EdgecastPlugin = PluginLoader(
    "EdgecastPlugin", "ansible.module_utils", C.DEFAULT_MODULE_UTILS_PATH, "module_utils"
).get("edgecast_plugin", class_only=True)

# The Kubernetes client, imported once for the workers of this task and edgecast_pod_switch's.
EdgecastPlugin.preload("edgecast.deploy.deployments")

DOCUMENTATION = r"""
module: edgecast_predictor_info
short_description: Read which model a node's predictor serves
description:
  - Reads the node's predictor Service and Deployments once and says which model the Service
    selects, which it selected before, whether that model's Deployment is available, the spec
    it was made with, and which models the node's objects refer to.
  - Never changes anything; check mode reads the same.
  - Needs only the namespace-scoped rollout Role (get services, list deployments; watch
    deployments and read pods and events for O(wait)).
options:
  kubeconfig:
    description:
      - Path of a kubeconfig on the controller. Without it, as kubernetes.core - the file in
        E(K8S_AUTH_KUBECONFIG), else the in-cluster service account, else the default
        kubeconfig (E(KUBECONFIG), else C(~/.kube/config)).
    type: path
  context:
    description: Context of O(kubeconfig) to use; its current context when omitted.
    type: str
  namespace:
    description: Namespace of the predictor objects.
    type: str
    default: edgecast
  node:
    description: The node's Kubernetes name.
    type: str
    required: true
  wait:
    description:
      - Wait until the Deployment of the model the Service selects is available, then read
        again. Fails when the node has no Service or that Deployment does not exist.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds O(wait) waits; the failure names what it waited for and why the pods are not
        ready.
    type: float
    default: 300
"""

EXAMPLES = r"""
- name: Ask which model edge-1 serves
  edgecast_predictor_info:
    kubeconfig: "{{ playbook_dir }}/kubeconfig.edge"
    namespace: edgecast
    node: edge-1
  register: edge1

- name: Go back to the model edge-1 served before, planning from what was read
  edgecast_pod_switch:
    kubeconfig: "{{ playbook_dir }}/kubeconfig.edge"
    spec: "{{ edge1.spec | combine({'model_id': edge1.previous_model_id}) }}"
    state: "{{ edge1.state }}"
"""

RETURN = r"""
service:
  description: The node's predictor Service (whether or not it exists).
  type: str
  returned: always
model_id:
  description: The model the Service selects; null when the node has no Service.
  type: str
  returned: always
previous_model_id:
  description: The model it selected before (the rollback target); null when none.
  type: str
  returned: always
deployment:
  description: The Deployment of the model the Service selects; null when there is none.
  type: str
  returned: always
available:
  description: Whether the Deployment controller reports that Deployment available.
  type: bool
  returned: always
spec:
  description:
    - The PredictorSpec fields that Deployment was made with (its C(edgecast.io/spec)
      annotation), C(model_id) included; null without one (a warning says why).
  type: dict
  returned: always
models_in_use:
  description:
    - The models of the node's Deployments, the one the Service selects and the one before;
      pruning the node's store must keep their bundles.
  type: list
  elements: str
  returned: always
state:
  description:
    - The node's Service and Deployments as read, for O(edgecast_pod_switch)'s C(state).
  type: dict
  returned: always
"""

ARGUMENT_SPEC: dict[str, Any] = {
    **EdgecastPlugin.kube_arguments(),
    "namespace": {"type": "str", "default": "edgecast"},
    "node": {"type": "str", "required": True},
    "wait": {"type": "bool", "default": False},
    "wait_timeout": {"type": "float", "default": 300.0},
}

REQUEST_TIMEOUT = 30.0


class ActionModule(EdgecastPlugin.ControllerAction):
    argument_spec = ARGUMENT_SPEC

    def act(self, args: dict[str, Any]) -> dict[str, Any]:
        plugin = "edgecast_predictor_info"
        kube = EdgecastPlugin.require(plugin, "edgecast.deploy.kube", extra="deploy")
        nodestate = EdgecastPlugin.require(plugin, "edgecast.deploy.nodestate", extra="deploy")
        deployments = EdgecastPlugin.require(plugin, "edgecast.deploy.deployments", extra="deploy")
        try:
            apis = kube.connect(args["kubeconfig"], args["context"])
        except kube.KubeConfigError as exc:
            return {"failed": True, "msg": str(exc)}
        namespaced = kube.NamespacedApi(apis, args["namespace"], REQUEST_TIMEOUT)
        try:
            state = nodestate.read_node_state(namespaced, args["node"])
            if args["wait"]:
                deployments.wait_serving_available(namespaced, state, args["wait_timeout"])
                state = nodestate.read_node_state(namespaced, args["node"])
        except kube.CheckFailed as exc:
            return {"failed": True, "msg": str(exc)}
        except kube.API_ERRORS as exc:
            return {
                "failed": True,
                "msg": f"reading the predictor of node {args['node']} in namespace "
                f"{args['namespace']} failed: {kube.api_reason(exc)}",
            }
        finally:
            apis.close()
        info = nodestate.predictor_info(state)
        result = {
            "changed": False,
            "node": info.node,
            "namespace": info.namespace,
            "service": info.service,
            "model_id": info.model_id,
            "previous_model_id": info.previous_model_id,
            "deployment": info.deployment,
            "available": info.available,
            "spec": asdict(info.spec) if info.spec is not None else None,
            "models_in_use": list(info.models_in_use),
            "state": state.record(),
            "msg": info.summary,
        }
        if info.spec_problem:
            result["warnings"] = [info.spec_problem]
        return result
