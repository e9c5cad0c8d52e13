"""Action ``edgecast_bundle_transfer``: move a verified bundle into a node's model store.

Thin: the checks, the packing and the decisions live in ``edgecast.rollout.transfer``; the node
side is the ``edgecast_bundle_store`` module. The bundle is verified on the controller before the
node is contacted; the node is asked whether it holds exactly that bundle, and the archive travels
only when it does not.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import PluginLoader

# Shared with the other edgecast plugins: see plugins/module_utils/edgecast_plugin.py.
EdgecastPlugin = PluginLoader(
    "EdgecastPlugin", "ansible.module_utils", C.DEFAULT_MODULE_UTILS_PATH, "module_utils"
).get("edgecast_plugin", class_only=True)

DOCUMENTATION = r"""
module: edgecast_bundle_transfer
short_description: Move a verified model bundle into an edge node's model store
description:
  - Verifies the bundle on the controller with C(edgecast.bundle) (every file's size and sha256,
    the weights against the architecture, the reference outputs, and the signature when
    O(public_key) is given). A bundle that fails any check fails the task with the reason, and
    nothing is sent to the node.
  - Asks the node (module C(edgecast_bundle_store) with C(probe)) whether its store holds exactly
    this bundle (same manifest sha256, every file intact). If so nothing is transferred.
  - Otherwise sends the archive (the bundle's own tar, or a gzip tar packed from the folder) to
    the node's remote temporary folder and installs it with C(edgecast_bundle_store) - staged,
    checked against the manifest verified here, renamed into place.
  - Leftovers of interrupted runs are removed and old bundles pruned (see O(keep), O(protect)).
  - Needs the edgecast package on the controller; the node needs Python 3.8 or later only.
options:
  bundle:
    description:
      - Bundle folder (named by its model_id) or tar archive of one, on the controller.
      - A relative path is taken from the controller's working directory.
    type: path
    required: true
  store:
    description: Model store folder on the node.
    type: str
    default: /var/lib/edgecast/models
  public_key:
    description:
      - Ed25519 public key (PEM) on the controller. When given the bundle must carry a valid
        signature by it; without it a signed bundle is refused as well.
    type: path
  keep:
    description:
      - Bundles the store keeps, counting this one; the others newest first by the manifest's
        C(created). Older ones are removed unless protected.
    type: int
    default: 3
  protect:
    description: Model ids never removed from the store (for example the one serving).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    details: Verifies the bundle and asks the node, then reports what would change.
"""

EXAMPLES = r"""
- name: Put the new bundle into the node's store, keeping the model it serves
  edgecast_bundle_transfer:
    bundle: /var/lib/edgecast/cloud/bundles/sbn-b13-20261127-034844-a479dd58
    store: /var/lib/edgecast/models
    public_key: /etc/edgecast/signer.pub
    keep: 3
    protect: [sbn-b13-20261120-101010-0badc0de]
  become: true
  register: transfer
"""

RETURN = r"""
model_id:
  description: The bundle's model_id.
  type: str
  returned: success
path:
  description: The bundle's folder on the node.
  type: str
  returned: success
manifest_sha256:
  description: sha256 of the manifest verified on the controller.
  type: str
  returned: success
signed:
  description: Whether the bundle carries a signature (verified when O(public_key) is given).
  type: bool
  returned: success
transferred:
  description: Whether the archive was sent to the node.
  type: bool
  returned: success
installed:
  description: Whether the bundle was (in check mode, would be) installed.
  type: bool
  returned: success
replaced:
  description: Whether a different or damaged folder of the same name was (would be) replaced.
  type: bool
  returned: success
removed:
  description: Model ids pruned from the store (in check mode, to be pruned).
  type: list
  elements: str
  returned: success
cleaned:
  description: Leftovers of interrupted runs removed from the store.
  type: list
  elements: str
  returned: success
"""

STORE_MODULE = "edgecast_bundle_store"

# Without store or keep, TransferOptions' defaults (the store rules') apply.
ARGUMENT_SPEC = {
    **EdgecastPlugin.bundle_arguments(),
    "store": {"type": "str"},
    "keep": {"type": "int"},
    "protect": {"type": "list", "elements": "str", "default": []},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        transfer = EdgecastPlugin.require("edgecast_bundle_transfer", "edgecast.rollout.transfer")
        given = {name: args[name] for name in ("store", "keep") if args[name] is not None}
        options = transfer.TransferOptions(**given, protect=tuple(args["protect"]))
        workdir = Path(tempfile.mkdtemp(prefix="edgecast-transfer-"))
        try:
            options.check()
            bundle = transfer.verify(
                Path(args["bundle"]), Path(args["public_key"]) if args["public_key"] else None
            )
            probe = self._store(transfer.store_args(bundle, options, probe=True), task_vars)
            install = transfer.needs_install(probe)
            if self._task.check_mode or not (install or transfer.needs_housekeeping(probe)):
                node, sent = probe, False
            elif install:
                archive = transfer.pack(bundle, workdir)
                remote = self._connection._shell.join_path(
                    self._connection._shell.tmpdir or self._make_tmp_path(), "bundle.tar"
                )
                self._transfer_file(str(archive), remote)
                self._fixup_perms2((self._connection._shell.tmpdir, remote), execute=False)
                node = self._store(transfer.store_args(bundle, options, src=remote), task_vars)
                sent = True
            else:
                node, sent = self._store(transfer.store_args(bundle, options), task_vars), False
        except transfer.TransferError as exc:
            result.update(failed=True, changed=False, msg=f"{exc}; nothing changed on the node")
            return result
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            self._remove_tmp_path(self._connection._shell.tmpdir)
        result.update(
            transfer.outcome(bundle, node, transferred=sent, check_mode=self._task.check_mode)
        )
        return result

    def _store(self, module_args: dict[str, Any], task_vars: dict[str, Any] | None) -> dict:
        """Runs the node module; its failure fails the task with the node's reason."""
        answer = self._execute_module(
            module_name=f"ansible.legacy.{STORE_MODULE}",
            module_args=module_args,
            task_vars=task_vars,
        )
        if answer.get("failed"):
            raise AnsibleActionFail(
                f"on the node: {answer.get('msg', 'edgecast_bundle_store failed')}", result=answer
            )
        return answer
