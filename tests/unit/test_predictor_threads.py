"""The predictor's default thread count: one per usable CPU, 2 to 4, a CPU quota counted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgecast.predictor import threads
from edgecast.predictor.config import ConfigError, PredictorConfig


@pytest.fixture
def cgroups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cgroup files in a folder of the test's own (the host's are whatever it has)."""
    monkeypatch.setattr(threads, "CGROUP_V2_CPU_MAX", tmp_path / "v2" / "cpu.max")
    monkeypatch.setattr(threads, "CGROUP_V1_CPU", tmp_path / "v1")
    (tmp_path / "v2").mkdir()
    (tmp_path / "v1").mkdir()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    return tmp_path


def test_without_a_quota_every_cpu_of_the_affinity_counts(cgroups: Path) -> None:
    assert threads.usable_cpus() == 8
    (cgroups / "v2" / "cpu.max").write_text("max 100000\n")
    assert threads.usable_cpus() == 8
    (cgroups / "v2" / "cpu.max").unlink()
    (cgroups / "v1" / "cpu.cfs_quota_us").write_text("-1\n")
    (cgroups / "v1" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.usable_cpus() == 8


@pytest.mark.parametrize(("quota", "cpus"), [("150000 100000", 2), ("50000 100000", 1)])
def test_a_cgroup_v2_quota_lowers_the_cpus_rounded_up(cgroups: Path, quota: str, cpus: int) -> None:
    (cgroups / "v2" / "cpu.max").write_text(quota + "\n")
    assert threads.usable_cpus() == cpus


def test_a_cgroup_v1_quota_lowers_the_cpus(cgroups: Path) -> None:
    (cgroups / "v1" / "cpu.cfs_quota_us").write_text("300000\n")
    (cgroups / "v1" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.usable_cpus() == 3


def test_an_unreadable_quota_is_no_quota(cgroups: Path) -> None:
    (cgroups / "v2" / "cpu.max").write_text("garbage\n")
    assert threads.usable_cpus() == 8


@pytest.mark.parametrize(("cpus", "expected"), [(1, 2), (2, 2), (3, 3), (4, 4), (64, 4)])
def test_the_default_is_one_thread_per_cpu_from_2_to_4(
    monkeypatch: pytest.MonkeyPatch, cpus: int, expected: int
) -> None:
    monkeypatch.setattr(threads, "usable_cpus", lambda: cpus)
    assert threads.default_threads() == expected
    assert PredictorConfig(model_store=Path("/nonexistent")).threads == expected


def test_this_machine_gets_a_default_within_its_bounds() -> None:
    usable = threads.usable_cpus()
    assert 1 <= usable <= (os.cpu_count() or 1)
    assert threads.default_threads() == min(4, max(2, usable))


@pytest.mark.parametrize("count", [0, -1, 65])
def test_a_thread_count_out_of_range_is_refused(count: int) -> None:
    with pytest.raises(ConfigError, match="threads must be 1 to 64"):
        PredictorConfig(model_store=Path("/nonexistent"), threads=count)
