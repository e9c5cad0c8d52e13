"""The cluster tier: the real Kubernetes of tests/infra/cluster (``kube_cluster``, shared with
the fleet tier through tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def only_the_kubeconfigs_passed() -> Iterator[None]:
    """Playbooks and clients of this tier get the cluster's kubeconfigs explicitly; one from
    the caller's environment must not leak into them."""
    saved = {name: os.environ.pop(name) for name in ("KUBECONFIG", "K8S_AUTH_KUBECONFIG")
             if name in os.environ}  # fmt: skip
    yield
    os.environ.update(saved)
