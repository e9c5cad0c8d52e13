"""Writes the variables table of each role's README from its meta/argument_specs.yml.

A role's variables are documented once, in meta/argument_specs.yml, which Ansible also validates
them against; defaults/main.yml gives their values. The table between the markers in
roles/<role>/README.md is generated from the two, so the README cannot drift from them: `--check`
fails when a README is out of date or a default is documented nowhere.

    python scripts/role_docs.py [--check] [ROLE_DIR ...]      (default: every role in roles/)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BEGIN = "<!-- BEGIN role_docs: generated from meta/argument_specs.yml and defaults/main.yml -->"
END = "<!-- END role_docs -->"
SECTION = "## Variables"

# Ansible's documentation markup (O(), C(), ...) as Markdown.
MARKUP = (
    (re.compile(r"L\(([^)]+?),\s*([^)]+)\)"), r"[\1](\2)"),
    (re.compile(r"U\(([^)]+)\)"), r"<\1>"),
    (re.compile(r"[OVCMEP]\(([^()]*(?:\([^()]*\)[^()]*)*)\)"), r"`\1`"),
    (re.compile(r"I\(([^)]+)\)"), r"*\1*"),
    (re.compile(r"B\(([^)]+)\)"), r"**\1**"),
)


class RoleDocsError(Exception):
    """A role whose documentation cannot be generated, with what to fix."""


@dataclass(frozen=True)
class Row:
    name: str
    type: str
    default: str
    description: str


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.exists() else None


def markdown(text: str) -> str:
    for pattern, replacement in MARKUP:
        text = pattern.sub(replacement, text)
    return text


def cell(text: str) -> str:
    """Text that stays inside one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def show_value(value: object) -> str:
    """A default as YAML would read it back, on one line."""
    text = (
        json.dumps(value, ensure_ascii=False) if not isinstance(value, str) or not value else value
    )
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def describe_type(spec: Mapping[str, Any]) -> str:
    kind = str(spec.get("type", "str"))
    if "elements" in spec:
        kind = f"{kind} of {spec['elements']}"
    return kind


def description_of(spec: Mapping[str, Any]) -> str:
    text = spec.get("description", "")
    lines = [text] if isinstance(text, str) else [str(line) for line in text]
    if "choices" in spec:
        lines.append("One of " + ", ".join(f"`{choice}`" for choice in spec["choices"]) + ".")
    return markdown(" ".join(line.strip() for line in lines))


def rows(
    options: Mapping[str, Any], defaults: Mapping[str, Any], prefix: str = ""
) -> Iterator[Row]:
    """One row per option, then one per sub-option (`parent.child`)."""
    for name, spec in options.items():
        spec = spec or {}
        if spec.get("required"):
            default = "required"
        elif not prefix and name in defaults:
            default = show_value(defaults[name])
        elif "default" in spec:
            default = show_value(spec["default"])
        else:
            default = ""
        yield Row(f"{prefix}{name}", describe_type(spec), default, description_of(spec))
        yield from rows(spec.get("options") or {}, {}, f"{prefix}{name}.")


def table(entry_point: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    lines = ["| Variable | Type | Default | Description |", "|---|---|---|---|"]
    for row in rows(entry_point.get("options") or {}, defaults):
        lines.append(
            f"| `{row.name}` | {row.type} | {cell(row.default)} | {cell(row.description)} |"
        )
    return lines


def variables_section(role: Path) -> str:
    """The generated text between the markers."""
    specs = (load_yaml(role / "meta" / "argument_specs.yml") or {}).get("argument_specs") or {}
    if not specs:
        raise RoleDocsError(f"{role}/meta/argument_specs.yml: no argument_specs to document")
    defaults = load_yaml(role / "defaults" / "main.yml") or {}
    documented = {name for spec in specs.values() for name in (spec.get("options") or {})}
    undocumented = sorted(set(defaults) - documented)
    if undocumented:
        raise RoleDocsError(
            f"{role}/defaults/main.yml: {', '.join(undocumented)} not in any entry point of "
            "meta/argument_specs.yml; document them there"
        )
    lines = [
        "Validated at run time against `meta/argument_specs.yml`; values from",
        "`defaults/main.yml`. Regenerate this table with `python scripts/role_docs.py`.",
    ]
    for name, spec in specs.items():
        if len(specs) > 1 or name != "main":
            how = "the role" if name == "main" else f"`tasks_from: {name}`"
            lines += ["", f"### Entry point `{name}` ({how})"]
        lines += ["", markdown(str(spec.get("short_description", ""))), ""]
        lines += table(spec, defaults)
    return "\n".join(lines)


def updated_readme(role: Path, readme: str | None) -> str:
    """The README with a fresh variables table, added as its last section if it has none."""
    block = f"{BEGIN}\n{variables_section(role)}\n{END}"
    if readme is None:
        main_spec = load_yaml(role / "meta" / "argument_specs.yml")["argument_specs"].get(
            "main", {}
        )
        text = main_spec.get("description", main_spec.get("short_description", ""))
        summary = "\n\n".join(
            markdown(" ".join(str(line).split()))
            for line in ([text] if isinstance(text, str) else text)
        )
        return f"# {role.name}\n\n{summary}\n\n{SECTION}\n\n{block}\n"
    if BEGIN not in readme:
        return f"{readme.rstrip()}\n\n{SECTION}\n\n{block}\n"
    head, _, rest = readme.partition(BEGIN)
    if END not in rest:
        raise RoleDocsError(f"{role}/README.md: {BEGIN!r} without {END!r}")
    return head + block + rest.partition(END)[2]


def roles_in(directory: Path) -> list[Path]:
    return sorted(path.parent.parent for path in directory.glob("*/meta/argument_specs.yml"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing, fail when stale")
    parser.add_argument("roles", nargs="*", type=Path, help="role directories (default: roles/*)")
    args = parser.parse_args(argv)
    stale = []
    for role in args.roles or roles_in(REPO / "roles"):
        path = role / "README.md"
        current = path.read_text() if path.exists() else None
        try:
            wanted = updated_readme(role, current)
        except RoleDocsError as error:
            print(f"role_docs: {error}", file=sys.stderr)
            return 2
        if wanted == current:
            continue
        if args.check:
            stale.append(str(path))
        else:
            path.write_text(wanted)
            print(f"role_docs: wrote {path}")
    if stale:
        print(
            f"role_docs: out of date: {', '.join(stale)}; run python scripts/role_docs.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
