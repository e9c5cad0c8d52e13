"""Every action plugin's and module's DOCUMENTATION and RETURN (and EXAMPLES where it has them)
are the YAML that ansible-doc reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from edgecast_harness.paths import REPO

PLUGINS = sorted(
    [*(REPO / "plugins" / "action").glob("*.py"), *(REPO / "plugins" / "modules").glob("*.py")]
)
BLOCKS = ("DOCUMENTATION", "EXAMPLES", "RETURN")


def doc_blocks(path: Path) -> dict[str, str]:
    blocks = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in BLOCKS:
                    blocks[target.id] = node.value.value
    return blocks


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_plugin_documents_itself_in_yaml(path: Path) -> None:
    blocks = doc_blocks(path)
    assert {"DOCUMENTATION", "RETURN"} <= set(blocks), f"{path.name} has only {set(blocks)}"
    documentation = yaml.safe_load(blocks["DOCUMENTATION"])
    assert documentation["module"] == path.stem
    assert documentation["short_description"]
    assert all(isinstance(line, str) for line in documentation["description"])
    for name in ("EXAMPLES", "RETURN"):
        if name in blocks:
            yaml.safe_load(blocks[name])
