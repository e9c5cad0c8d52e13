"""Each role's README documents its variables as its meta/argument_specs.yml does."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from edgecast_harness.paths import REPO


def load_role_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("role_docs", REPO / "scripts" / "role_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["role_docs"] = module
    spec.loader.exec_module(module)
    return module


role_docs = load_role_docs()
ROLES = role_docs.roles_in(REPO / "roles")


def test_every_role_is_documented() -> None:
    names = {role.name for role in ROLES}
    with_tasks = {path.parent.parent.name for path in (REPO / "roles").glob("*/tasks/main.yml")}
    assert with_tasks <= names, f"roles without meta/argument_specs.yml: {with_tasks - names}"


@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.name)
def test_readme_is_up_to_date(role: Path) -> None:
    readme = role / "README.md"
    assert readme.exists(), f"{readme} is missing: run python scripts/role_docs.py"
    current = readme.read_text()
    assert role_docs.BEGIN in current, f"{readme} has no variables table markers"
    assert role_docs.updated_readme(role, current) == current, (
        f"{readme} is out of date with meta/argument_specs.yml or defaults/main.yml: "
        "run python scripts/role_docs.py"
    )


def write_role(root: Path, specs: str, defaults: str) -> Path:
    role = root / "roles" / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(specs)
    (role / "defaults" / "main.yml").write_text(defaults)
    return role


SPECS = """
argument_specs:
  main:
    short_description: Demo role.
    description: [Does C(nothing) at all.]
    options:
      demo_mode:
        type: str
        default: fast
        choices: [fast, slow]
        description: How fast, see O(demo_limits.soft).
      demo_limits:
        type: dict
        description: Limits | with a pipe.
        options:
          soft: {type: int, required: true, description: Soft limit.}
"""


def test_table_takes_defaults_from_defaults_main(tmp_path: Path) -> None:
    role = write_role(tmp_path, SPECS, "demo_mode: slow\ndemo_limits: {}\n")
    readme = role_docs.updated_readme(role, None)
    assert readme.startswith("# demo\n\nDoes `nothing` at all.\n")
    assert (
        "| `demo_mode` | str | `slow` | How fast, see `demo_limits.soft`. One of `fast`, `slow`. |"
        in readme
    )
    assert "| `demo_limits` | dict | `{}` | Limits \\| with a pipe. |" in readme
    assert "| `demo_limits.soft` | int | required | Soft limit. |" in readme


def test_text_outside_the_markers_is_kept(tmp_path: Path) -> None:
    role = write_role(tmp_path, SPECS, "demo_mode: fast\n")
    before = f"# demo\n\nIntro.\n\n{role_docs.BEGIN}\nstale\n{role_docs.END}\n\n## After\n"
    after = role_docs.updated_readme(role, before)
    assert after.startswith("# demo\n\nIntro.\n\n") and after.endswith("\n\n## After\n")
    assert "stale" not in after
    assert role_docs.updated_readme(role, after) == after


def test_an_undocumented_default_is_refused(tmp_path: Path) -> None:
    role = write_role(tmp_path, SPECS, "demo_mode: fast\ndemo_hidden: 1\n")
    with pytest.raises(role_docs.RoleDocsError, match="demo_hidden not in any entry point"):
        role_docs.updated_readme(role, None)


def test_check_fails_on_a_stale_readme(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    role = write_role(tmp_path, SPECS, "demo_mode: fast\n")
    (role / "README.md").write_text(f"# demo\n\n{role_docs.BEGIN}\n{role_docs.END}\n")
    assert role_docs.main(["--check", str(role)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert role_docs.main([str(role)]) == 0
    assert role_docs.main(["--check", str(role)]) == 0
