"""Test tiers, slow preparations in the background, and the fixtures every tier shares.

Tiers are folders, and each folder is a marker (registered in pytest.ini): ``unit`` (no root,
no network, no Docker), ``process`` (real predictor and ansible-playbook processes on this
machine), ``container`` (real Docker containers and image builds), ``molecule`` (the roles'
Molecule scenarios), ``fleet`` (separate hosts reached over SSH, provisioned by the playbooks)
and ``cluster`` (the real Kubernetes of tests/infra/cluster). They run in
that order, so the quick tiers report first while the slow preparations run in the background.

Every predictor here is a real ``edgecast serve`` process (waitress) called over HTTP on
127.0.0.1; every bundle is trained by the real ``edgecast train`` on the shipped data.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecast_harness.background import BackgroundJob
from edgecast_harness.bodies import window_from_data
from edgecast_harness.bundles import TrainedStore
from edgecast_harness.cache import cached_dir, content_key
from edgecast_harness.cluster import Cluster, SharedCluster
from edgecast_harness.images import BuiltImage, build_predictor_image
from edgecast_harness.paths import REPO
from edgecast_harness.predictor import PredictorLauncher, edgecast

GOLDEN_STORE = REPO / "tests" / "unit" / "fixtures" / "bundles"
TIERS = ("unit", "process", "container", "molecule", "fleet", "cluster")


def tier_of(item: pytest.Item) -> str:
    tier = item.path.relative_to(REPO / "tests").parts[0]
    assert tier in TIERS, f"{item.nodeid}: a test lives in one of the tier folders {TIERS}"
    return tier


def pytest_itemcollected(item: pytest.Item) -> None:
    """Each test gets its tier's marker (before ``-m`` selects)."""
    item.add_marker(tier_of(item))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tiers run in order; slow preparations start now, in the background.

    The cluster build and the Debian base images that the selected tests name (a module's
    ``BASE_IMAGES``) are made while the other tests run; see background.py. ``trylast`` so
    that this sees the selection after ``-k``/``-m`` deselection.
    """
    items.sort(key=lambda item: TIERS.index(tier_of(item)))
    on_cluster = [item for item in items if "kube_cluster" in getattr(item, "fixturenames", ())]
    if config.option.collectonly:
        return
    images: list[str] = []
    for item in items:
        for image in getattr(item.module, "BASE_IMAGES", ()) if item.module else ():
            if image not in images:
                images.append(image)
    if images:
        # Tarballs only: the test's own base-image.sh call (after Docker is up) imports them,
        # or waits on the image's lock while one is made. The first image needed comes first;
        # the others are made side by side (debootstrap waits on downloads, and under qemu on
        # one emulated core each).
        script = (
            'export EDGECAST_BASE_IMAGE_NO_IMPORT=1; bash "$1" $2; '
            'for image in "${@:3}"; do bash "$1" $image & done; wait'
        )
        base_image = str(REPO / "tests" / "infra" / "base-image.sh")
        base_image_prefetch.start("bash", "-c", script, "prefetch", base_image, *images)
    if on_cluster:
        cluster_build.start("bash", str(REPO / "tests/infra/cluster/cluster.sh"), "build")


base_image_prefetch = BackgroundJob("base-images")
cluster_build = BackgroundJob("cluster-build")
_shared_cluster = SharedCluster()


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[Cluster]:
    """The harness's cluster (tests/infra/cluster), started (and built if needed) once for the
    whole run: the fleet tier joins its hosts to it, the cluster tier deploys on its node."""
    yield _shared_cluster.start()
    _shared_cluster.stop()


def pytest_sessionfinish(session: pytest.Session) -> None:
    cluster_build.stop()
    base_image_prefetch.stop()


TRAININGS = (
    ("--building", "b13", "--seed", "0"),
    ("--building", "b13", "--seed", "1", "--epochs", "4"),
)


def train_store(store: Path) -> None:
    for args in TRAININGS:
        edgecast("train", *args, "--out", str(store))


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    """Two bundles trained by the real ``edgecast train`` on the shipped data.

    Kept in the cache under a key of everything that shapes them (the package's modules, the
    pinned frameworks, the data and the arguments), so a run whose code and data are unchanged
    reuses them; ``site.yml``'s tests still train for real in every run.
    """
    # The package's top-level modules and bundle/ make bundles (training, features, the bundle
    # format); its deploy/, predictor/ and rollout/ subpackages only use them.
    package = REPO / "app" / "edgecast"
    inputs = [*sorted(package.glob("*.py")), *sorted((package / "bundle").glob("*.py"))]
    inputs.append(REPO / "requirements.txt")
    inputs.append(REPO / "data")
    key = content_key(inputs, *(" ".join(args) for args in TRAININGS))
    cached = cached_dir("bundles", key, train_store)
    root = tmp_path_factory.mktemp("store")
    shutil.copytree(cached, root, dirs_exist_ok=True)
    ids = sorted(p.name for p in root.iterdir())
    assert len(ids) == 2, ids
    return TrainedStore(root, ids)


@pytest.fixture(scope="module")
def body() -> dict:
    """A valid prediction request of real data; a module's own, so that its tests share it."""
    return window_from_data()


@pytest.fixture
def start_predictor(tmp_path: Path) -> Iterator:
    """Factory: start_predictor(store, *args, admin=False, wait=True) -> Predictor."""
    launcher = PredictorLauncher(tmp_path)
    yield launcher.start
    launcher.stop_all()


@pytest.fixture(scope="session")
def golden_bundle() -> Path:
    """One real bundle kept in the checkout (tests/unit/fixtures/bundles), made by ``edgecast
    train --building b13 --seed 0 --epochs 2``: the unit tier's model, loaded on LiteRT (no
    TensorFlow); tests/unit/test_golden_bundle.py says how to make it again when the format moves.
    """
    (bundle,) = sorted(p for p in GOLDEN_STORE.iterdir() if p.is_dir())
    return bundle


@pytest.fixture(scope="session")
def predictor_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    """The predictor image, built by the predictor_image role once per run (container and
    cluster tiers)."""
    image = build_predictor_image(tmp_path_factory.mktemp("predictor-image"))
    try:
        yield image
    finally:
        image.remove()
