"""Action ``edgecast_pod_switch``: move a node's predictor Service to a model by pod switching.

Thin: the work is ``edgecast.deploy.podswitch``. Runs on the controller, which talks to the API
server of the node's k3s cluster with the kubeconfig given (or, without one, the service account
of the pod it runs in). The account needs only the predictor namespace's rollout Role.
"""

from __future__ import annotations

import json
from typing import Any

from ansible import constants as C
from ansible.plugins.loader import PluginLoader

# Shared with the other edgecast plugins: see plugins/module_utils/edgecast_plugin.py.
EdgecastPlugin = PluginLoader(
    "EdgecastPlugin", "ansible.module_utils", C.DEFAULT_MODULE_UTILS_PATH, "module_utils"
).get("edgecast_plugin", class_only=True)

# The Kubernetes client, imported once for the workers of every later task.
EdgecastPlugin.preload("edgecast.deploy.podswitch")

DOCUMENTATION = r"""
module: edgecast_pod_switch
short_description: Switch a node's predictor to another model by pod switching
description:
  - Starts the model's predictor Deployment beside the serving one, waits until it is available,
    asks its pod through the API server which model it serves, then patches the node's Service
    selector, waits until the Service's EndpointSlices list only the new pod and the Service
    answers with the new model, keeps the old pod for O(drain_seconds) and deletes it; the task
    ends once the old pod is terminating (out of every Service, finishing its own graceful exit),
    or with O(wait_removed) once it is gone.
  - A node without a Service gets one once the new pod answers (a first deployment).
  - A failure before the switch deletes the new Deployment; a failure after it points the
    Service back at the old model first. The old model keeps serving and the task fails with the
    reason.
  - No change when the Service already selects the model and its Deployment is available.
  - Rolling back is the same task with the older model's spec; its bundle must be in the node's
    store.
  - In check mode, reads only and reports what would change, or fails with the reason when the
    switch would be refused (the model's Deployment, which the Service selects, has another spec).
  - To read which model a node serves, use C(edgecast_predictor_info), and pass its C(state) here.
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
    description: Namespace of the predictor objects; C(spec.namespace) must agree when given.
    type: str
  spec:
    description:
      - Fields of C(edgecast.deploy.manifests.PredictorSpec), at least C(node), C(model_id) and
        C(image); the same fields the C(edgecast_manifests) lookup takes.
    type: dict
    required: true
  state:
    description:
      - The node's objects as C(edgecast_predictor_info) returned them (its C(state)) moments
        before; the switch plans from them instead of reading them again. They must be of the
        spec's node and namespace.
    type: dict
  in_place:
    description:
      - When the Service already selects the model but its Deployment or the Service differs
        from the spec, bring them to the spec instead of refusing. The Deployment's Recreate
        strategy stops the old pod before the new one starts, so clients see a gap; the
        predictor_deploy role does this for a node's first model, rollouts never do.
    type: bool
    default: false
  timeouts:
    description: Seconds to wait for each condition.
    type: dict
    suboptions:
      ready_timeout:
        description: For the new Deployment to be available.
        type: float
        default: 300
      endpoints_timeout:
        description: For the Service's EndpointSlices to list only the new pod.
        type: float
        default: 60
      verify_timeout:
        description: For the Service to answer with the new model through the API server.
        type: float
        default: 15
      cleanup_timeout:
        description:
          - For the old pods to be terminating (gone, with O(wait_removed)) after their
            Deployments are deleted (a warning, not a failure, when exceeded). Defaults to the
            pods' termination grace period plus 30.
        type: float
  drain_seconds:
    description: Seconds the old pod keeps running after the Service stopped selecting it.
    type: float
    default: 5
  wait_removed:
    description:
      - Wait until the old pods are gone, not only terminating. Their graceful exit (the
        predictor's shutdown delay, then closing kept-alive connections) then adds its seconds
        to the task; the kubelet ends it within the pods' termination grace period either way.
    type: bool
    default: false
  conflict_retries:
    description: Retries of the Service patch after a 409 Conflict.
    type: int
    default: 5
"""

EXAMPLES = r"""
- name: Ask which model edge-1 serves
  edgecast_predictor_info:
    kubeconfig: "{{ playbook_dir }}/kubeconfig.edge"
    namespace: edgecast
    node: edge-1
  register: edge1

- name: Switch edge-1 to the new model, keeping the rest of its spec
  edgecast_pod_switch:
    kubeconfig: "{{ playbook_dir }}/kubeconfig.edge"
    spec: "{{ edge1.spec | combine({'model_id': new_model_id}) }}"
    state: "{{ edge1.state }}"
    timeouts:
      ready_timeout: 600
    drain_seconds: 10
  register: switched

- name: Go back to the model edge-1 served before
  edgecast_pod_switch:
    kubeconfig: "{{ playbook_dir }}/kubeconfig.edge"
    spec:
      node: edge-1
      model_id: "{{ switched.previous_model_id }}"
      image: edgecast-predictor:1.4
"""

RETURN = r"""
model_id:
  description: The model the node's Service selects afterwards.
  type: str
  returned: always
previous_model_id:
  description: The model it selected before (null on a first deployment).
  type: str
  returned: always
phases:
  description:
    - Seconds spent in each phase (create, ready, verify_pod, switch, endpoints,
      verify_service, drain, cleanup, total); on failure, those reached.
  type: dict
  returned: always
removed_deployments:
  description: The old Deployments deleted.
  type: list
  elements: str
  returned: success
actions:
  description: In check mode, what would be done.
  type: list
  elements: str
  returned: check mode
phase:
  description: The phase that failed.
  type: str
  returned: failure
reverted:
  description: Whether the old model was left (or put back) serving after a failure.
  type: bool
  returned: failure
"""

ARGUMENT_SPEC: dict[str, Any] = {
    **EdgecastPlugin.kube_arguments(),
    "namespace": {"type": "str"},
    "spec": {"type": "dict", "required": True},
    "state": {"type": "dict"},
    "in_place": {"type": "bool", "default": False},
    "timeouts": {
        "type": "dict",
        "default": {},
        "apply_defaults": True,
        "options": {
            "ready_timeout": {"type": "float", "default": 300.0},
            "endpoints_timeout": {"type": "float", "default": 60.0},
            "verify_timeout": {"type": "float", "default": 15.0},
            "cleanup_timeout": {"type": "float"},
        },
    },
    "drain_seconds": {"type": "float", "default": 5.0},
    "wait_removed": {"type": "bool", "default": False},
    "conflict_retries": {"type": "int", "default": 5},
}

PLUGIN = "edgecast_pod_switch"


class ActionModule(EdgecastPlugin.ControllerAction):
    argument_spec = ARGUMENT_SPEC

    def act(self, args: dict[str, Any]) -> dict[str, Any]:
        kube = EdgecastPlugin.require(PLUGIN, "edgecast.deploy.kube", extra="deploy")
        manifests = EdgecastPlugin.require(PLUGIN, "edgecast.deploy.manifests", extra="deploy")
        nodestate = EdgecastPlugin.require(PLUGIN, "edgecast.deploy.nodestate", extra="deploy")

        # Plain copies: ansible-core 2.19 hands over lazy containers that dataclasses cannot copy.
        raw = json.loads(json.dumps(args["spec"]))
        namespace = args["namespace"]
        if namespace and raw.get("namespace", namespace) != namespace:
            return {
                "failed": True,
                "msg": f"namespace {namespace!r} and spec.namespace {raw['namespace']!r} differ",
            }
        if namespace:
            raw["namespace"] = namespace
        try:
            spec = manifests.PredictorSpec(**raw)
            spec.check()
            state = None
            if args["state"] is not None:
                state = nodestate.NodeState.from_record(json.loads(json.dumps(args["state"])))
                state.check_of(spec.node, spec.namespace)
        except (TypeError, ValueError) as exc:
            return {"failed": True, "msg": f"{PLUGIN}: bad spec or state: {exc}"}
        try:
            apis = kube.connect(args["kubeconfig"], args["context"])
        except kube.KubeConfigError as exc:
            return {"failed": True, "msg": str(exc)}
        try:
            if self._task.check_mode:
                return self._plan(apis, spec, state, args["in_place"])
            return self._switch(apis, spec, state, args)
        except kube.API_ERRORS as exc:
            return {
                "failed": True,
                "msg": f"reading the predictor objects failed: {kube.api_reason(exc)}",
            }
        finally:
            apis.close()

    @staticmethod
    def _plan(apis: Any, spec: Any, state: Any, in_place: bool) -> dict[str, Any]:
        podswitch = EdgecastPlugin.require(PLUGIN, "edgecast.deploy.podswitch", extra="deploy")
        plan = podswitch.plan_switch(apis, spec, in_place=in_place, state=state)
        if plan.refusal:
            return {"failed": True, "msg": plan.refusal, "model_id": plan.model_id}
        return {
            "changed": plan.changed,
            "model_id": plan.model_id,
            "previous_model_id": plan.previous_model_id,
            "phases": {},
            "actions": list(plan.actions),
            "msg": "; ".join(plan.actions) or f"already serving {plan.model_id}",
        }

    @staticmethod
    def _switch(apis: Any, spec: Any, state: Any, args: dict[str, Any]) -> dict[str, Any]:
        podswitch = EdgecastPlugin.require(PLUGIN, "edgecast.deploy.podswitch", extra="deploy")
        limits = args["timeouts"]
        try:
            switched = podswitch.pod_switch(
                apis,
                spec,
                in_place=args["in_place"],
                state=state,
                timeouts=podswitch.Timeouts(
                    ready=limits["ready_timeout"],
                    endpoints=limits["endpoints_timeout"],
                    verify=limits["verify_timeout"],
                    cleanup=limits["cleanup_timeout"],
                ),
                drain_seconds=args["drain_seconds"],
                conflict_retries=args["conflict_retries"],
                wait_removed=args["wait_removed"],
            )
        except podswitch.PodSwitchError as exc:
            return {
                "failed": True,
                "msg": str(exc),
                "model_id": spec.model_id,
                "phase": exc.phase,
                "reverted": exc.reverted,
                "phases": exc.phases,
            }
        done: dict[str, Any] = {
            "changed": switched.changed,
            "model_id": switched.model_id,
            "previous_model_id": switched.previous_model_id,
            "phases": switched.phases,
            "removed_deployments": list(switched.removed_deployments),
            "msg": switched.msg,
        }
        if switched.warnings:
            done["warnings"] = list(switched.warnings)
        return done
