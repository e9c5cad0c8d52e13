"""The cluster tier: one real Kubernetes (tests/infra/cluster) for every test in this folder."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from edgecast_harness.cluster import Cluster, SharedCluster

_shared = SharedCluster()


@pytest.fixture(scope="session", autouse=True)
def only_the_kubeconfigs_passed() -> Iterator[None]:
    """Playbooks and clients of this tier get the cluster's kubeconfigs explicitly; one from
    the caller's environment must not leak into them."""
    saved = {name: os.environ.pop(name) for name in ("KUBECONFIG", "K8S_AUTH_KUBECONFIG")
             if name in os.environ}  # fmt: skip
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[Cluster]:
    """The harness's cluster, started (and built if needed) once for the whole test run."""
    yield _shared.start()
    _shared.stop()
