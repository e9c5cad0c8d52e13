"""Lookup ``edgecast_manifests``: a node's predictor Deployment and Service as API objects.

Thin: the objects come from ``edgecast.deploy.manifests.render``, the same code the pod switch
starts predictors with; the predictor_deploy role renders through it to fail on a bad setting
before anything changes.
"""

from __future__ import annotations

import json
from typing import Any

from ansible import constants as C
from ansible.errors import AnsibleLookupError
from ansible.plugins.loader import PluginLoader
from ansible.plugins.lookup import LookupBase

# Shared with the other edgecast plugins: see plugins/module_utils/edgecast_plugin.py.
EdgecastPlugin = PluginLoader(
    "EdgecastPlugin", "ansible.module_utils", C.DEFAULT_MODULE_UTILS_PATH, "module_utils"
).get("edgecast_plugin", class_only=True)

DOCUMENTATION = r"""
name: edgecast_manifests
short_description: Render a node's predictor Deployment and Service
description:
  - Returns one dict with C(deployment) and C(service) keys, rendered from the package's
    Kubernetes templates (C(edgecast/deploy/templates/k8s), which C(templates/k8s) links to).
options:
  _terms:
    description: Not used.
    required: false
  spec:
    description: Fields of C(edgecast.deploy.manifests.PredictorSpec) (node, model_id, image, ...).
    type: dict
    required: true
"""


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list:
        self.set_options(var_options=variables, direct=kwargs)
        manifests = EdgecastPlugin.require(
            "edgecast_manifests", "edgecast.deploy.manifests", extra="deploy"
        )
        # A plain copy: ansible-core 2.19 hands over lazy containers that dataclasses cannot copy.
        raw = json.loads(json.dumps(self.get_option("spec")))
        try:
            return [manifests.render(manifests.PredictorSpec(**raw))]
        except (TypeError, manifests.ManifestError) as exc:
            raise AnsibleLookupError(f"edgecast_manifests: {exc}") from exc
