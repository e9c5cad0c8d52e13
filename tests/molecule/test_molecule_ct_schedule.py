"""Molecule scenario of the ct_schedule role, run for real:
`cd roles/ct_schedule && molecule test -s ct_schedule`.

One systemd container: the role's refusals on the untouched host (an OnCalendar that
`systemd-analyze calendar` rejects, a missing checkout) change nothing, and --check runs through
there; then the timer and its oneshot service are installed, a second converge and --check
change nothing, and verify asserts
the real state: `systemd-analyze verify` accepts the units, the timer is enabled and listed by
`systemctl list-timers` with its next elapse, a start while the lock is held is refused, one
started cycle runs the role's default command line (a stand-in ansible-playbook in a stand-in
checkout records its argv, account, directory, lock and environment) to success, and
state=absent removes it all, twice without a change the second time.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgecast_harness.docker import base_image
from edgecast_harness.molecule import (
    flat,
    molecule_environment,
    recap_counts,
    run_molecule,
    step_output,
)

# Debian base images (tests/infra/base-image.sh ARCH [FLAVOUR]) that conftest.py prepares
# in the background while earlier tests run.
BASE_IMAGES = ("amd64 systemd",)

SCENARIO_TIMEOUT_S = 900
# The environment file's secret in molecule.yml, which no step may print.
SECRET = "molecule-secret-5f0c2a"


def test_molecule_ct_schedule(tmp_path: Path) -> None:
    env = molecule_environment()
    base_image("amd64", "systemd")
    log = tmp_path / "molecule-ct_schedule.log"
    output = run_molecule("ct_schedule", "ct_schedule", env, log, timeout=SCENARIO_TIMEOUT_S)

    prepare = flat(step_output(output, "prepare"))
    assert "is not a systemd calendar expression" in prepare, prepare[-3000:]
    assert "lacks /srv/edgecast" in prepare, prepare[-3000:]

    # The scenario runs --check twice: on the fresh host, then on the converged one.
    checks = re.findall(r"➜ check: Executing\n(.*?)➜ check: Executed: (\w+)", output, re.S)
    assert [result for _, result in checks] == ["Successful", "Successful"], checks
    (fresh, _), (converged, _) = checks
    assert max(recap_counts(fresh, "changed")) > 0, fresh[-3000:]
    assert set(recap_counts(fresh, "failed")) == {0}, fresh[-3000:]
    assert set(recap_counts(converged, "changed")) == {0}, f"--check changed:\n{converged[-3000:]}"

    converge = step_output(output, "converge")
    assert max(recap_counts(converge, "changed")) > 0, converge[-3000:]
    idempotence = step_output(output, "idempotence")
    assert set(recap_counts(idempotence, "changed")) == {0}, idempotence[-3000:]
    verify = step_output(output, "verify")
    assert set(recap_counts(verify, "failed")) == {0}, verify[-3000:]

    assert SECRET not in output, "a step printed the environment file's secret"
