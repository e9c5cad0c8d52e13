"""The decisions of playbooks/bootstrap-python.yml, rendered by Ansible's own templating.

The play reads what its raw probe printed ("os <ID> <VERSION_ID> <ID_LIKE>", then "python <path>
<major.minor>" per interpreter that runs) and decides which interpreter to use, which package
would bring one, and what to tell the user when there is none. The Molecule scenario
(roles/jetson_runtime/molecule/bootstrap_python) runs it on real hosts; here every branch is
rendered from recorded probe output, and the probe itself runs against stub interpreters.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from edgecast_harness.paths import REPO

LOADER = DataLoader()
PLAY = LOADER.load_from_file(
    str(REPO / "playbooks" / "bootstrap-python.yml"), trusted_as_template=True
)[0]
TASKS = {task["name"]: task for task in PLAY["tasks"]}
REFUSAL = TASKS["Stop a host without a Python Ansible can run, with the fix"]

BIONIC = ["os ubuntu 18.04 debian", "python /usr/bin/python3 3.6"]
BOOKWORM = ["os debian 12 ", "python /usr/bin/python3 3.11", "python /usr/bin/python3.11 3.11"]
SKIPPED = {"skipped": True, "changed": False}


def host_vars(lines: list[str], **extra: Any) -> dict[str, Any]:
    """The play's variables on a host whose probe printed ``lines``."""
    return {
        **PLAY["vars"],
        "inventory_hostname": "jetson-01",
        "ansible_check_mode": False,
        "__bootstrap_python_lines": lines,
        "__bootstrap_python_install": SKIPPED,
        **extra,
    }


def render(expression: str, variables: dict[str, Any]) -> Any:
    return Templar(loader=LOADER, variables=variables).template(trust_as_template(expression))


def refusal(variables: dict[str, Any]) -> str:
    return render(REFUSAL["ansible.builtin.fail"]["msg"], {**variables, **REFUSAL["vars"]})


@pytest.mark.parametrize(
    ("lines", "usable"),
    [
        (BOOKWORM, "/usr/bin/python3"),
        # JetPack 4 after the installation: python3 is still 3.6, python3.8 sits beside it.
        ([*BIONIC, "python /usr/bin/python3.8 3.8"], "/usr/bin/python3.8"),
        (["os ubuntu 20.04 debian", "python /usr/bin/python3 3.8"], "/usr/bin/python3"),
        # Versions compare as versions, not as text: 3.10 is newer than 3.8.
        (["os ubuntu 22.04 debian", "python /usr/bin/python3 3.10"], "/usr/bin/python3"),
        (BIONIC, ""),
        (["os debian 12 "], ""),
    ],
)
def test_the_first_python_3_8_or_later_is_chosen(lines: list[str], usable: str) -> None:
    assert render("{{ __bootstrap_python_usable }}", host_vars(lines)) == usable


@pytest.mark.parametrize(
    ("os_line", "package"),
    [
        ("os ubuntu 18.04 debian", "python3.8"),
        ("os ubuntu 20.04 debian", "python3"),
        ("os debian 12 ", "python3"),
        ("os raspbian 11 debian", "python3"),
        ("os alpine 3.19 ", ""),
        ("os unknown unknown ", ""),
    ],
)
def test_the_package_comes_from_the_os_archive(os_line: str, package: str) -> None:
    assert render("{{ __bootstrap_python_package }}", host_vars([os_line])) == package


def test_packages_per_release_can_be_added() -> None:
    variables = host_vars(
        ["os debian 10 "], bootstrap_python_packages={"debian 10": "python3.9-from-backports"}
    )
    assert render("{{ __bootstrap_python_package }}", variables) == "python3.9-from-backports"


def test_a_jetpack_4_host_whose_archive_has_no_python_3_8_is_told_the_fix() -> None:
    install = {"changed": False, "stdout_lines": ["E: Unable to locate package python3.8"]}
    message = refusal(host_vars(BIONIC, __bootstrap_python_install=install))
    assert message.startswith(
        "jetson-01 (ubuntu 18.04) has no Python 3.8 or later, which ansible-core needs on every "
        "host it manages (found: /usr/bin/python3 3.6)."
    )
    assert "enable universe for bionic and bionic-updates in /etc/apt/sources.list" in message
    assert "(apt-get: E: Unable to locate package python3.8)" in message
    assert (
        "JetPack 5 (Ubuntu 20.04, Python 3.8) or JetPack 6 (Ubuntu 22.04, Python 3.10)" in message
    )
    assert message.endswith("No package was installed.")


def test_an_installed_python_that_is_still_too_old_is_named() -> None:
    install = {"changed": True, "stdout_lines": ["installed python3"]}
    lines = ["os debian 10 ", "python /usr/bin/python3 3.7"]
    message = refusal(host_vars(lines, __bootstrap_python_install=install))
    assert "(found: /usr/bin/python3 3.7)" in message
    assert "python3 from the OS archive is older than 3.8 or could not be installed." in message
    assert "was changed" not in message and "No package" not in message


def test_a_host_outside_debian_and_ubuntu_is_told_to_bring_its_own() -> None:
    message = refusal(host_vars(["os alpine 3.19 "]))
    assert "(found: no Python at all)" in message
    assert "this play installs one by itself on Debian and Ubuntu only" in message
    assert message.endswith("Nothing was changed.")


def test_an_interpreter_set_for_the_host_is_checked_not_replaced() -> None:
    variables = host_vars(BIONIC, ansible_python_interpreter="/usr/bin/python3")
    assert render("{{ __bootstrap_python_candidates }}", variables) == ["/usr/bin/python3"]
    assert render("{{ __bootstrap_python_configured }}", variables) is True
    message = refusal(variables)
    assert "ansible_python_interpreter is set to /usr/bin/python3 for this host" in message
    # Ansible's discovery keywords are no setting of the user's.
    auto = host_vars(BIONIC, ansible_python_interpreter="auto_silent")
    assert render("{{ __bootstrap_python_configured }}", auto) is False


def test_check_mode_and_find_only_runs_say_what_a_real_run_would_do() -> None:
    checked = refusal(host_vars(BIONIC, ansible_check_mode=True))
    assert "Check mode installs nothing: a run without --check installs python3.8" in checked
    find_only = refusal(host_vars(BIONIC, bootstrap_python_install=False))
    assert "bootstrap_python_install is false here: run site.yml once (it installs python3.8" in (
        find_only
    )


def test_the_probe_skips_interpreters_that_do_not_run(tmp_path: Path) -> None:
    """The probe's shell loop, against stub interpreters on PATH (a pyenv shim that fails)."""
    stubs = {
        "python3": "echo 3.6",
        "python3.8": "echo 3.8",
        "python3.13": "echo 'pyenv: python3.13: command not found' >&2; exit 127",
    }
    for name, body in stubs.items():
        stub = tmp_path / name
        stub.write_text(f"#!/bin/sh\n{body}\n")
        stub.chmod(0o755)
    probe = render("{{ __bootstrap_python_probe }}", host_vars([]))
    # Only the stubs on PATH: the probe and the stubs need nothing but the shell's builtins.
    env = {"PATH": str(tmp_path), "HOME": os.environ.get("HOME", "/")}
    result = subprocess.run(
        ["/bin/sh", "-c", probe], capture_output=True, text=True, env=env, check=True, timeout=30
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("os ")
    assert lines[1:] == [f"python {tmp_path}/python3 3.6", f"python {tmp_path}/python3.8 3.8"]
    assert render("{{ __bootstrap_python_usable }}", host_vars(lines)) == f"{tmp_path}/python3.8"
