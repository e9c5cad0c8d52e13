"""Action ``edgecast_bundle_verify``: check a bundle on the controller before anything moves.

Thin: ``edgecast.bundle.load_bundle`` checks every digest, the layout of the weights, the
reference outputs and, when a public key is given, the signature; ``edgecast.promotion`` refuses
a candidate that ``edgecast retrain`` refused (it lost to the champion), whatever the options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible import constants as C
from ansible.plugins.loader import PluginLoader

# Shared with the other edgecast plugins: see plugins/module_utils/edgecast_plugin.py.
EdgecastPlugin = PluginLoader(
    "EdgecastPlugin", "ansible.module_utils", C.DEFAULT_MODULE_UTILS_PATH, "module_utils"
).get("edgecast_plugin", class_only=True)

DOCUMENTATION = r"""
module: edgecast_bundle_verify
short_description: Verify a model bundle on the controller
description:
  - Fails with the reason when a digest, the weight layout, the reference outputs or the signature
    (required when O(public_key) is given) do not check out. Never changes anything.
  - Fails for a bundle whose manifest says champion/challenger (C(edgecast retrain)) refused it.
options:
  bundle:
    description: Bundle directory or tar archive on the controller.
    type: path
    required: true
  public_key:
    description: Ed25519 public key (PEM) on the controller; the bundle must be signed by it.
    type: path
  naive_floor:
    description:
      - Refuse a bundle whose held-out MAE (the manifest's) is above seasonal naive's, or that
        does not record it. When false, such a bundle passes with a warning.
    type: bool
    default: false
"""

RETURN = r"""
model_id:
  description: The bundle's model_id.
  type: str
  returned: success
summary:
  description: The manifest without per-file digests (created, metrics, versions, signed).
  type: dict
  returned: success
ratio_to_seasonal_naive:
  description: The model's held-out MAE over seasonal naive's; null when the manifest lacks it.
  type: float
  returned: success
"""


class ActionModule(EdgecastPlugin.ControllerAction):
    argument_spec = EdgecastPlugin.bundle_arguments() | {
        "naive_floor": {"type": "bool", "default": False}
    }

    def act(self, args: dict[str, Any]) -> dict[str, Any]:
        bundles = EdgecastPlugin.require("edgecast_bundle_verify", "edgecast.bundle")
        signing = EdgecastPlugin.require("edgecast_bundle_verify", "edgecast.signing")
        floor = EdgecastPlugin.require("edgecast_bundle_verify", "edgecast.floor")
        promotion = EdgecastPlugin.require("edgecast_bundle_verify", "edgecast.promotion")

        try:
            key = signing.load_public_key(Path(args["public_key"])) if args["public_key"] else None
            bundle = bundles.load_bundle(Path(args["bundle"]), key)
        except (bundles.BundleError, OSError, ValueError) as exc:
            return {"failed": True, "msg": f"bundle refused: {exc}"}
        try:
            promotion.check_not_refused(bundle.manifest)
        except promotion.PromotionError as exc:
            return {"failed": True, "msg": f"bundle refused by champion/challenger: {exc}"}
        try:
            warning = floor.check_floor(bundle.manifest, args["naive_floor"])
        except floor.FloorError as exc:
            return {"failed": True, "msg": f"bundle refused by the naive floor: {exc}"}
        try:
            ratio = floor.ratio_to_naive(bundle.manifest)
        except floor.FloorError:
            ratio = None
        result = {
            "changed": False,
            "model_id": bundle.model_id,
            "summary": bundle.summary(),
            "ratio_to_seasonal_naive": ratio,
            "msg": f"{bundle.model_id}: digests{' and signature' if key else ''} verified",
        }
        if warning:
            result["warnings"] = [warning]
        return result
