"""The controller's half of a transfer (``edgecast.rollout.transfer``): what it reads from a bundle
folder, it reads as the checks do, never through a link and never more than the bundle may hold."""

from __future__ import annotations

import resource
import tarfile
from pathlib import Path

import pytest

from edgecast.rollout import transfer
from edgecast_harness.bundle_faults import GIB, MANIFEST, WEIGHTS, manifest_symlinked_outside


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_a_verified_folder_is_packed_with_the_manifest_first(golden_copy: Path, tmp_path: Path):
    verified = transfer.verify(golden_copy)
    with tarfile.open(transfer.pack(verified, tmp_path)) as tar:
        names = tar.getnames()
    files = sorted(p.name for p in golden_copy.iterdir() if p.name != MANIFEST)
    assert names == [golden_copy.name, *(f"{golden_copy.name}/{n}" for n in [MANIFEST, *files])]


def test_a_manifest_linked_from_outside_the_bundle_is_refused(golden_copy: Path):
    manifest_symlinked_outside(golden_copy)
    with pytest.raises(transfer.TransferError) as refused:
        transfer.verify(golden_copy)
    assert str(refused.value) == (
        f"bundle {golden_copy} refused: '{MANIFEST}' is a symbolic link: bundle files must be "
        "regular files, never links"
    )


def test_a_manifest_of_a_gib_is_refused_unread(golden_copy: Path):
    with (golden_copy / MANIFEST).open("r+b") as manifest:
        manifest.truncate(GIB)  # sparse: free to make, a gibibyte to read
    before = peak_rss_kb()
    with pytest.raises(transfer.TransferError, match=f"{MANIFEST} is larger than 1048576 bytes"):
        transfer.verify(golden_copy)
    assert peak_rss_kb() - before < 50 * 1024


def test_a_file_swapped_for_a_link_after_the_check_is_not_packed(golden_copy: Path, tmp_path: Path):
    """The link points at the very bytes that were verified: only not following it refuses it."""
    verified = transfer.verify(golden_copy)
    outside = tmp_path / f"outside-{WEIGHTS}"
    (golden_copy / WEIGHTS).replace(outside)
    (golden_copy / WEIGHTS).symlink_to(outside)
    with pytest.raises(transfer.TransferError, match=f"'{WEIGHTS}' is a symbolic link"):
        transfer.pack(verified, tmp_path)


def test_a_file_grown_to_a_gib_after_the_check_is_not_packed(golden_copy: Path, tmp_path: Path):
    verified = transfer.verify(golden_copy)
    size = verified.files[WEIGHTS]["size"]
    with (golden_copy / WEIGHTS).open("r+b") as weights:
        weights.truncate(GIB)
    before = peak_rss_kb()
    with pytest.raises(
        transfer.TransferError, match=f"{WEIGHTS}: {GIB} bytes but the manifest says {size}"
    ):
        transfer.pack(verified, tmp_path)
    assert peak_rss_kb() - before < 50 * 1024
