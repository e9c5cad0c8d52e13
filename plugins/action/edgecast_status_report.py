"""Action ``edgecast_status_report``: the fleet's status rows, shown as one table a person reads.

The table is written to the play's output as it is, line by line: a task result would be
re-formatted by the callback (quoted, folded at its line width), which breaks the columns.
"""

from __future__ import annotations

import json
from typing import Any

from ansible import constants as C
from ansible.plugins.loader import PluginLoader
from ansible.utils.display import Display

# Shared with the other edgecast plugins: see plugins/module_utils/edgecast_plugin.py.
EdgecastPlugin = PluginLoader(
    "EdgecastPlugin", "ansible.module_utils", C.DEFAULT_MODULE_UTILS_PATH, "module_utils"
).get("edgecast_plugin", class_only=True)

DOCUMENTATION = r"""
module: edgecast_status_report
short_description: Show the fleet's status rows as a table, or as JSON
description:
  - Shows the rows of M(edgecast_predictor_status), one per node, as an aligned table under a
    header (a node that could not be read gets a line saying why), or as JSON.
options:
  rows:
    description: The C(status) of each node's M(edgecast_predictor_status).
    type: list
    elements: dict
    required: true
  format:
    description: C(table) or C(json).
    type: str
    choices: [table, json]
    default: table
"""

RETURN = r"""
lines:
  description: What was shown.
  type: list
  elements: str
  returned: always
"""

ARGUMENT_SPEC: dict[str, Any] = {
    "rows": {"type": "list", "elements": "dict", "required": True},
    "format": {"type": "str", "choices": ["table", "json"], "default": "table"},
}


class ActionModule(EdgecastPlugin.ControllerAction):
    argument_spec = ARGUMENT_SPEC

    def act(self, args: dict[str, Any]) -> dict[str, Any]:
        status = EdgecastPlugin.require("edgecast_status_report", "edgecast.status")
        if args["format"] == "json":
            lines = json.dumps(args["rows"], indent=2, sort_keys=True).splitlines()
        else:
            lines = status.table(args["rows"])
        Display().display("\n".join(lines))
        return {"changed": False, "lines": lines}
