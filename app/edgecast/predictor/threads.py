"""How many prediction threads a predictor runs when it is not told."""

from __future__ import annotations

import math
import os
from pathlib import Path

# Prediction threads by default: one per usable CPU, at least 2 (a hot swap or a slow request on
# one never stops the other from answering) and at most 4. The GIL runs one thread's Python at a
# time, and a forecast releases it only briefly (LiteRT's invoke, TensorFlow's call), so threads
# beyond the CPUs add handoffs, not answers: on 2 CPUs, 2 threads answered about 10% more
# requests a second than 4 with the LiteRT runtime, and as many with Keras
# (bench/predictor_bench.py --threads).
MIN_DEFAULT_THREADS = 2
MAX_DEFAULT_THREADS = 4
MAX_THREADS = 64
CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")


def _cgroup_cpu_quota() -> float | None:
    """The CPUs a cgroup quota (a container's CPU limit) allows, or None without one."""
    try:
        quota, period = CGROUP_V2_CPU_MAX.read_text().split()[:2]
        if quota == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((CGROUP_V1_CPU / "cpu.cfs_quota_us").read_text())
        period_us = int((CGROUP_V1_CPU / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), lowered by a cgroup CPU quota."""
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity else os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return min(cpus, math.ceil(quota)) if quota else cpus


def default_threads() -> int:
    """One per usable CPU, 2 to 4 (the reasons are above)."""
    return min(MAX_DEFAULT_THREADS, max(MIN_DEFAULT_THREADS, usable_cpus()))
