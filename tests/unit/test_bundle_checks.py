"""Bundle checks in-process: every fault of the shared table is refused by name, fast.

The same injected faults as the process tier (edgecast_harness.bundle_faults), applied to a copy
of the golden bundle and loaded the way the predictor loads a bundle: ``load_bundle_dir`` (files,
digests, signature, weight layout, reference, the node's limits) and then the parity gate on the
LiteRT runtime. The hostile archives go through ``unpacked``, as ``edgecast verify`` reads them.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import pytest

from edgecast.bundle import BundleError, ParityLimit, load_bundle_dir, sign_bundle, unpacked
from edgecast.forecaster import load_forecaster
from edgecast.signing import generate_keypair, load_private_key, load_public_key
from edgecast.store import ModelStore
from edgecast_harness import bundle_faults as faults
from edgecast_harness.bundle_faults import ArchiveFault, Fault, refusal_problems


def refusal(bundle: Path, public_key: Path | None = None, limit: ParityLimit | None = None) -> str:
    """The message the predictor would refuse ``bundle`` with."""
    key = load_public_key(public_key) if public_key else None
    with pytest.raises(BundleError) as refused:
        load_forecaster(load_bundle_dir(bundle, key, limit or ParityLimit()), "litert")
    return str(refused.value)


def unpack_refusal(archive: Path) -> str:
    with pytest.raises(BundleError) as refused, unpacked(archive):
        pass
    return str(refused.value)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, str]]:
    directory = tmp_path_factory.mktemp("keys")
    made = {}
    for name in ("signer", "other"):
        private, public = directory / f"{name}.pem", directory / f"{name}.pub.pem"
        made[name] = (private, public, generate_keypair(private, public))
    return made


def test_the_golden_bundle_passes_every_check(golden_copy: Path) -> None:
    forecaster, parity = load_forecaster(load_bundle_dir(golden_copy), "litert")
    assert forecaster.model_id == golden_copy.name
    assert parity.ok and parity.max_abs_diff <= parity.worst_allowed


@pytest.mark.parametrize(
    "fault",
    faults.by_name(faults.DIRECTORY_FAULTS, faults.MALFORMED_FAULTS, faults.HOSTILE_FAULTS),
)
def test_a_faulty_bundle_is_refused_naming_the_fault(fault: Fault, golden_copy: Path) -> None:
    # The fault table names the keras runtime of the process tier's predictor; this is litert.
    fragments = [f.replace("keras runtime", "litert runtime") for f in fault.inject(golden_copy)]
    started = time.perf_counter()
    message = refusal(golden_copy)
    assert not refusal_problems(message, fragments), (refusal_problems(message, fragments), message)
    assert time.perf_counter() - started < 5, "a refusal costs no more than a good bundle"


@pytest.mark.parametrize("fault", faults.by_name(faults.ARCHIVE_FAULTS))
def test_a_hostile_archive_is_refused_before_it_is_extracted(
    fault: ArchiveFault, golden_bundle: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "hostile.tar.gz"
    fragments = fault.build(golden_bundle, archive)
    started = time.perf_counter()
    message = unpack_refusal(archive)
    assert not refusal_problems(message, fragments), (refusal_problems(message, fragments), message)
    assert time.perf_counter() - started < 5, "refused from the headers, nothing expanded"


def test_unsafe_archive_members_are_refused(golden_bundle: Path, tmp_path: Path) -> None:
    escape = f"edgecast-escaped-{uuid.uuid4().hex}.txt"
    member = faults.tar_with_traversal(golden_bundle, tmp_path / "traversal.tar.gz", escape)
    message = unpack_refusal(tmp_path / "traversal.tar.gz")
    assert repr(member) in message and "outside the destination" in message, message
    assert not (tmp_path / escape).exists()
    member = faults.tar_with_symlink(golden_bundle, tmp_path / "symlink.tar.gz")
    assert f"member {member!r} is not a file or folder" in unpack_refusal(
        tmp_path / "symlink.tar.gz"
    )


def test_a_store_entry_that_is_a_symbolic_link_is_never_served(
    golden_bundle: Path, tmp_path: Path
) -> None:
    """A link in the store to a good bundle outside it: not listed, not loaded."""
    outside = faults.clone_bundle(golden_bundle, tmp_path / "elsewhere", "linked-in")
    store = tmp_path / "store"
    store.mkdir()
    (store / outside.name).symlink_to(outside)
    assert ModelStore(store).model_ids() == []
    with pytest.raises(BundleError, match=r"'linked-in' in the model store .* is a symbolic link"):
        ModelStore(store).path_of(outside.name)
    with pytest.raises(BundleError, match="is a symbolic link: a bundle is a folder"):
        load_bundle_dir(store / outside.name)


def test_the_parity_tolerance_is_capped_by_the_node_not_the_bundle(golden_copy: Path) -> None:
    """The golden bundle asks for exactly the default limit; a stricter node refuses it."""
    load_bundle_dir(golden_copy, None, ParityLimit(rtol=1e-4, atol_std=1e-4))
    message = refusal(golden_copy, limit=ParityLimit(rtol=1e-4, atol_std=5e-5))
    assert "asks for a parity tolerance of atol 0.0026 kWh" in message, message
    assert "this node allows at most atol 0.0013 kWh (5e-05 of the load's standard" in message
    message = refusal(golden_copy, limit=ParityLimit(rtol=1e-5))
    assert "and rtol 1e-05" in message, message


def test_signatures_are_required_checked_and_cover_the_manifest(
    golden_bundle: Path, tmp_path: Path, keys: dict[str, tuple[Path, Path, str]]
) -> None:
    signer_private, signer_public, signer_id = keys["signer"]
    other_private, _, other_id = keys["other"]

    def copy(name: str) -> Path:
        return Path(shutil.copytree(golden_bundle, tmp_path / name / golden_bundle.name))

    signed = copy("signed")
    sign_bundle(signed, load_private_key(signer_private))
    load_bundle_dir(signed, load_public_key(signer_public))  # the control: it verifies
    assert f"bundle is signed (key id {signer_id})" in refusal(signed)

    assert "bundle is unsigned" in refusal(copy("unsigned"), signer_public)

    by_other = copy("other")
    sign_bundle(by_other, load_private_key(other_private))
    message = refusal(by_other, signer_public)
    assert f"(key id {other_id}) does not verify" in message, message

    loosened = copy("loosened")
    sign_bundle(loosened, load_private_key(signer_private))
    faults.loosen_signed_parity(loosened)
    assert "bad signature" in refusal(loosened, signer_public)

    flipped = copy("flipped")
    sign_bundle(flipped, load_private_key(signer_private))
    fragments = faults.flip_weights_byte(flipped)
    message = refusal(flipped, signer_public)
    assert all(fragment in message for fragment in fragments), message
