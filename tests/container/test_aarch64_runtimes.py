"""Both runtimes on aarch64 numerics: bundles trained on this x86 machine, checked and forecast
in the Debian bookworm arm64 userland under qemu with TensorFlow's and LiteRT's aarch64 wheels
(edgecast_harness.aarch64; built once, kept by content).

``edgecast verify --runtime all`` passes the parity gate with Keras and LiteRT on aarch64, and
refuses there a bundle whose reference forecasts are off; ``bench/aarch64_parity.py`` (the
paper's parity experiment) runs on real windows and finds every aarch64 forecast within the
bundle's tolerance of the x86 cloud's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgecast.bundle import load_bundle_dir
from edgecast_harness.aarch64 import run_aarch64, runtimes_image
from edgecast_harness.bundle_faults import clone_bundle, shift_reference_outputs
from edgecast_harness.bundles import TrainedStore
from edgecast_harness.paths import REPO

pytestmark = pytest.mark.container

BASE_IMAGES = ("arm64",)


@pytest.fixture(scope="module")
def image() -> str:
    return runtimes_image()


def test_verify_passes_both_runtimes_on_aarch64(image: str, trained_store: TrainedStore) -> None:
    model_id = trained_store.model_ids[0]
    bundle = trained_store.root / model_id
    done = run_aarch64(
        image, "sh", "-c", f"uname -m && edgecast verify /bundles/{model_id} --runtime all",
        volumes={bundle: f"/bundles/{model_id}:ro"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "aarch64"
    assert any(line.startswith("keras: parity ok") for line in lines), done.stdout
    assert any(line.startswith("litert: parity ok") for line in lines), done.stdout


def test_verify_refuses_a_bundle_off_its_reference_on_aarch64(
    image: str, trained_store: TrainedStore, tmp_path: Path
) -> None:
    bad = clone_bundle(trained_store.root / trained_store.model_ids[0], tmp_path, "off-by-1kwh")
    said = shift_reference_outputs(bad)
    done = run_aarch64(
        image, "edgecast", "verify", f"/bundles/{bad.name}", "--runtime", "all",
        volumes={bad: f"/bundles/{bad.name}:ro"},
    )  # fmt: skip
    assert done.returncode != 0
    assert said[0] in done.stdout + done.stderr, done.stdout + done.stderr[-2000:]


def test_the_parity_bench_finds_aarch64_within_tolerance(
    image: str, trained_store: TrainedStore, tmp_path: Path
) -> None:
    bundle = trained_store.root / trained_store.model_ids[0]
    out = tmp_path / "parity.json"
    subprocess.run(
        [sys.executable, "bench/aarch64_parity.py", "--bundle", str(bundle), "--windows", "200",
         "--json", str(out)],
        cwd=REPO, check=True, timeout=1800, capture_output=True, text=True,
    )  # fmt: skip
    rows = {row["edge"]: row["figures"] for row in json.loads(out.read_text())}
    assert set(rows) == {"x86_64 litert", "aarch64 keras", "aarch64 litert"}
    tolerance = load_bundle_dir(bundle).tolerance
    reference_cases = len(load_bundle_dir(bundle).reference.loads)
    for edge, figures in rows.items():
        assert figures["forecasts"] == (reference_cases + 200) * 24, (edge, figures)
        # Within the gate's tolerance at the smallest forecast (atol), on real windows too.
        assert figures["max"] <= tolerance.atol, (edge, figures, tolerance)
    print(f"\naarch64 parity on 200 real windows: {json.dumps(rows, indent=1)}")
