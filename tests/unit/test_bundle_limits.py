"""The bounds on a bundle: consistent with each other, shared with the node module, and the
hostile files that test them well-formed (so each refusal is the bound's, not a broken file's)."""

from __future__ import annotations

import importlib.util
import io
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

import edgecast.store_rules
from edgecast.architecture import HYPER_PARAMETER_RANGES, ArchitectureError, SBNConfig
from edgecast.architecture import expected_weight_shapes as shapes_of
from edgecast.bundle import BundleError, load_bundle_dir, unpacked
from edgecast.bundle.layout import MAX_FILE_BYTES, MAX_REFERENCE_CASES, REFERENCE, WEIGHTS
from edgecast.cli import build_parser
from edgecast.predictor.config import ConfigError, PredictorConfig
from edgecast.store_rules import MANIFEST, MAX_ARCHIVE_MEMBERS, MAX_BUNDLE_BYTES
from edgecast_harness.bundle_faults import (
    MAX_REFUSAL_CHARS,
    MIB,
    load_npz,
    npz_with_zeros,
    tar_gz_of_20000_members,
    tar_gz_with_gib_member,
)
from edgecast_harness.paths import REPO

LARGEST = SBNConfig(
    **{name: high for name, (_, high) in HYPER_PARAMETER_RANGES.items()}, use_temperature=True
)


def node_module():
    """The node module ``edgecast_bundle_store``, imported as Ansible ships it."""
    sys.modules.setdefault("ansible.module_utils.edgecast_store_rules", edgecast.store_rules)
    path = REPO / "plugins" / "modules" / "edgecast_bundle_store.py"
    spec = importlib.util.spec_from_file_location("edgecast_bundle_store", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("edgecast_bundle_store", module)
    spec.loader.exec_module(module)
    return module


def npz_size(arrays: dict[str, np.ndarray]) -> int:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return len(buffer.getvalue())


def test_the_largest_network_a_node_builds_fits_the_size_caps() -> None:
    """The ranges and the caps agree: the largest bundle the ranges allow is not refused.

    Its LiteRT export holds the same float32 weights, so it is counted as large as them.
    """
    weights = npz_size({k: np.zeros(s, np.float32) for k, s in shapes_of(LARGEST).items()})
    n, window = MAX_REFERENCE_CASES, LARGEST.window
    reference = npz_size(
        {
            "loads": np.zeros((n, window)),
            "temperatures": np.zeros((n, window)),
            "last_timestamps": np.zeros(n, np.int64),
            "outputs": np.zeros((n, LARGEST.horizon)),
        }
    )
    assert weights <= MAX_FILE_BYTES[WEIGHTS]
    assert reference <= MAX_FILE_BYTES[REFERENCE]
    small_files = sum(size for name, size in MAX_FILE_BYTES.items() if name.endswith(".json"))
    assert 2 * weights + reference + small_files <= MAX_BUNDLE_BYTES
    assert MAX_FILE_BYTES[MANIFEST] == edgecast.store_rules.MAX_MANIFEST_BYTES


@pytest.mark.parametrize("name", sorted(HYPER_PARAMETER_RANGES))
def test_each_hyper_parameter_is_refused_outside_its_range_in_few_words(name: str) -> None:
    low, high = HYPER_PARAMETER_RANGES[name]
    for value in (low - 1, high + 1, 10**400):
        with pytest.raises(ArchitectureError, match=f"{name} .* is outside the range") as refused:
            replace(LARGEST, **{name: value})
        assert len(str(refused.value)) < 300, refused.value


def test_an_architecture_file_full_of_junk_gets_a_short_refusal() -> None:
    junk = {"name": "x" * 100_000, "version": list(range(10_000))}
    with pytest.raises(ArchitectureError) as refused:
        SBNConfig.from_dict(junk)
    assert len(str(refused.value)) < MAX_REFUSAL_CHARS
    with pytest.raises(ArchitectureError) as refused:
        SBNConfig.from_dict({"name": "sbn", "version": 1} | {f"k{i}" * 50: 1 for i in range(999)})
    assert len(str(refused.value)) < MAX_REFUSAL_CHARS


def test_the_node_module_installs_bundles_within_the_same_bounds(tmp_path: Path) -> None:
    module = node_module()
    options = yaml.safe_load(module.DOCUMENTATION)["options"]
    assert options["max_bytes"]["default"] == MAX_BUNDLE_BYTES
    archive = tmp_path / "members.tar.gz"
    tar_gz_of_20000_members(tmp_path / "m1", archive)
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(module.StoreError, match=f"more than {MAX_ARCHIVE_MEMBERS} members"):
        module.unpack(str(archive), str(staging), "m1", "0" * 64, MAX_BUNDLE_BYTES)


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_unpacked_reads_each_kind_of_archive_and_leaves_nothing(
    mode: str, golden_bundle: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "bundle.tar"
    with tarfile.open(archive, mode) as tar:
        tar.add(golden_bundle, arcname=golden_bundle.name)
    with unpacked(archive) as folder:
        assert load_bundle_dir(folder).model_id == golden_bundle.name
    assert not folder.exists()


def test_parity_limits_are_checked_where_they_are_configured() -> None:
    parser = build_parser()
    args = parser.parse_args(["verify", "b", "--max-parity-rtol", "1e-3"])
    assert (args.max_parity_rtol, args.max_parity_atol_std) == (1e-3, 1e-4)
    for bad in ("-1", "nan", "inf", "lots"):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", "--max-parity-atol-std", bad])
    with pytest.raises(ConfigError, match="parity limit's rtol"):
        PredictorConfig(model_store=Path("s"), max_parity_rtol=-1.0)
    assert PredictorConfig(model_store=Path("s"), max_parity_atol_std=2e-4).parity_limit.atol_std


# --- controls: the hostile files are well-formed ------------------------------------------------


def test_an_npz_with_deflated_zeros_is_a_readable_npz(tmp_path: Path) -> None:
    path = tmp_path / "zeros.npz"
    path.write_bytes(npz_with_zeros({"a": np.arange(3.0)}, "zeros", (3, MIB // 4 + 5)))
    arrays = load_npz(path)
    assert arrays["a"].tolist() == [0.0, 1.0, 2.0]
    assert arrays["zeros"].shape == (3, MIB // 4 + 5) and not arrays["zeros"].any()


def test_a_tar_gz_of_repeated_gzip_members_is_a_readable_tar(
    golden_bundle: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "big.tar.gz"
    tar_gz_with_gib_member(golden_bundle, archive, size=MIB + 3)
    with tarfile.open(archive) as tar:
        member = tar.getmember(f"{golden_bundle.name}/{WEIGHTS}")
        data = tar.extractfile(member).read()
    assert len(data) == MIB + 3 and not any(data)
    with (
        unpacked(archive) as folder,
        pytest.raises(BundleError, match=f"{WEIGHTS}: {MIB + 3} bytes but the manifest says"),
    ):
        load_bundle_dir(folder)
