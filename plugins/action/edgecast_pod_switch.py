"""Action ``edgecast_pod_switch``: move a node's predictor Service to a model by pod switching.

Thin: the work is ``edgecast.deploy.podswitch`` (``nodestate`` for what each node serves). Runs
on the controller, which talks to the API server of the node's k3s cluster with the kubeconfig
given (or, without one, the service account of the pod it runs in). The account needs only the
predictor namespace's rollout Role.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ansible.plugins.action import ActionBase

DOCUMENTATION = r"""
module: edgecast_pod_switch
short_description: Switch a node's predictor to another model by pod switching
description:
  - Starts the model's predictor Deployment beside the serving one, waits until it is available,
    asks its pod through the API server which model it serves, then patches the node's Service
    selector, waits until the Service's EndpointSlices list only the new pod and the Service
    answers with the new model, keeps the old pod for I(drain_seconds) and deletes it.
  - A failure before the switch deletes the new Deployment; a failure after it points the
    Service back at the old model first. The old model keeps serving and the task fails with the
    reason.
  - No change when the Service already selects the model and its Deployment is available.
  - Rolling back is the same task with the older model's spec; its bundle must be in the node's
    store.
  - In check mode, reads only and reports what would change, or fails with the reason when the
    switch would be refused (the model's Deployment, which the Service selects, has another spec).
  - Without I(spec), changes nothing and returns C(serving), the model each node's predictor
    Service selects and the one it selected before (to choose a rollback target and to keep
    those bundles when pruning a store).
options:
  kubeconfig:
    description:
      - Path of a kubeconfig on the controller. Without it, the in-cluster service account is
        used.
    type: path
  context:
    description: Context of I(kubeconfig) to use; its current context when omitted.
    type: str
  namespace:
    description:
      - Namespace of the predictor objects; C(spec.namespace) must agree when both are given.
      - Without I(spec), defaults to C(edgecast).
    type: str
  spec:
    description:
      - Fields of C(edgecast.deploy.manifests.PredictorSpec), at least C(node), C(model_id) and
        C(image); the same fields the C(edgecast_manifests) lookup takes.
      - Omit it to only read which model each node serves.
    type: dict
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
          - For the old pods to be gone after their Deployments are deleted (a warning, not a
            failure, when exceeded). Defaults to the pods' termination grace period plus 30.
        type: float
  drain_seconds:
    description: Seconds the old pod keeps running after the Service stopped selecting it.
    type: float
    default: 5
  conflict_retries:
    description: Retries of the Service patch after a 409 Conflict.
    type: int
    default: 5
"""

EXAMPLES = r"""
- name: Switch edge-1 to the new model
  edgecast_pod_switch:
    kubeconfig: "{{ playbook_dir }}/kubeconfig.edge"
    namespace: edgecast
    spec:
      node: edge-1
      model_id: "{{ new_model_id }}"
      image: edgecast-predictor:1.4
    timeouts:
      ready_timeout: 600
    drain_seconds: 10
  register: switched

- name: Read which model each node serves, and which it served before
  edgecast_pod_switch:
    kubeconfig: "{{ playbook_dir }}/kubeconfig.edge"
    namespace: edgecast
  register: fleet

- name: Go back to the model edge-1 served before
  edgecast_pod_switch:
    kubeconfig: "{{ playbook_dir }}/kubeconfig.edge"
    namespace: edgecast
    spec:
      node: edge-1
      model_id: "{{ fleet.serving['edge-1'].previous_model_id }}"
      image: edgecast-predictor:1.4
"""

RETURN = r"""
model_id:
  description: The model the node's Service selects afterwards.
  type: str
  returned: when spec is given
previous_model_id:
  description: The model it selected before (null on a first deployment).
  type: str
  returned: when spec is given
serving:
  description:
    - Without spec, by node name, C(model_id) and C(previous_model_id) of the node's Service,
      with C(node), C(service) and C(deployment) names.
  type: dict
  returned: when spec is omitted
phases:
  description:
    - Seconds spent in each phase (create, ready, verify_pod, switch, endpoints,
      verify_service, drain, cleanup, total); on failure, those reached.
  type: dict
  returned: when spec is given
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

DEFAULT_NAMESPACE = "edgecast"

ARGUMENT_SPEC: dict[str, Any] = {
    "kubeconfig": {"type": "path"},
    "context": {"type": "str"},
    "namespace": {"type": "str"},
    "spec": {"type": "dict"},
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
    "conflict_retries": {"type": "int", "default": 5},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        try:
            from kubernetes.config import ConfigException

            from edgecast.deploy.kube import API_ERRORS, api_reason, connect
            from edgecast.deploy.manifests import ManifestError, PredictorSpec
        except ImportError as exc:
            result.update(
                failed=True,
                msg=f"edgecast_pod_switch needs edgecast and kubernetes on the controller: {exc}",
            )
            return result

        spec = None
        namespace = args["namespace"]
        if args["spec"] is not None:
            raw = dict(args["spec"])
            if namespace and raw.get("namespace", namespace) != namespace:
                result.update(
                    failed=True,
                    msg=f"namespace {namespace!r} and spec.namespace {raw['namespace']!r} differ",
                )
                return result
            if namespace:
                raw["namespace"] = namespace
            try:
                spec = PredictorSpec(**raw)
                spec.check()
            except (TypeError, ManifestError) as exc:
                result.update(failed=True, msg=f"edgecast_pod_switch: bad spec: {exc}")
                return result
        try:
            apis = connect(args["kubeconfig"], args["context"])
        except (ConfigException, OSError, ValueError) as exc:
            where = args["kubeconfig"] or "the in-cluster service account"
            result.update(
                failed=True, msg=f"cannot configure the Kubernetes client from {where}: {exc}"
            )
            return result
        try:
            if spec is None:
                result.update(self._serving(apis, namespace or DEFAULT_NAMESPACE))
            elif self._task.check_mode:
                result.update(self._plan(apis, spec))
            else:
                result.update(self._switch(apis, spec, args))
        except API_ERRORS as exc:
            result.update(
                failed=True, msg=f"reading the predictor objects failed: {api_reason(exc)}"
            )
        finally:
            apis.close()
        return result

    @staticmethod
    def _serving(apis: Any, namespace: str) -> dict[str, Any]:
        from edgecast.deploy.nodestate import serving_models

        found = serving_models(apis, namespace)
        return {
            "changed": False,
            "serving": {node: asdict(model) for node, model in sorted(found.items())},
            "msg": f"{len(found)} predictor Service(s) in namespace {namespace}",
        }

    @staticmethod
    def _plan(apis: Any, spec: Any) -> dict[str, Any]:
        from edgecast.deploy.podswitch import plan_switch

        plan = plan_switch(apis, spec)
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
    def _switch(apis: Any, spec: Any, args: dict[str, Any]) -> dict[str, Any]:
        from edgecast.deploy.podswitch import PodSwitchError, Timeouts, pod_switch

        limits = args["timeouts"]
        try:
            switched = pod_switch(
                apis,
                spec,
                timeouts=Timeouts(
                    ready=limits["ready_timeout"],
                    endpoints=limits["endpoints_timeout"],
                    verify=limits["verify_timeout"],
                    cleanup=limits["cleanup_timeout"],
                ),
                drain_seconds=args["drain_seconds"],
                conflict_retries=args["conflict_retries"],
            )
        except PodSwitchError as exc:
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
