"""Bundle checks in-process: every fault of the shared table is refused by name, fast.

The same injected faults as the process tier (edgecast_harness.bundle_faults), applied to a copy
of the golden bundle and loaded the way the predictor loads a bundle: ``load_bundle_dir`` (files,
digests, signature, weight layout, reference) and then the parity gate on the LiteRT runtime.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgecast.bundle import BundleError, load_bundle_dir, sign_bundle
from edgecast.forecaster import ParityError, load_forecaster
from edgecast.signing import generate_keypair, load_private_key, load_public_key
from edgecast_harness.bundle_faults import (
    DIRECTORY_FAULTS,
    MALFORMED_FAULTS,
    Fault,
    flip_weights_byte,
    loosen_signed_parity,
)


def refusal(bundle: Path, public_key: Path | None = None) -> str:
    """The message the predictor would refuse ``bundle`` with."""
    key = load_public_key(public_key) if public_key else None
    with pytest.raises((BundleError, ParityError)) as refused:
        load_forecaster(load_bundle_dir(bundle, key), "litert")
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
    "fault", [pytest.param(f, id=f.name) for f in DIRECTORY_FAULTS + MALFORMED_FAULTS]
)
def test_a_faulty_bundle_is_refused_naming_the_fault(fault: Fault, golden_copy: Path) -> None:
    # The fault table names the keras runtime of the process tier's predictor; this is litert.
    fragments = [f.replace("keras runtime", "litert runtime") for f in fault.inject(golden_copy)]
    message = refusal(golden_copy)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


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
    loosen_signed_parity(loosened)
    assert "bad signature" in refusal(loosened, signer_public)

    flipped = copy("flipped")
    sign_bundle(flipped, load_private_key(signer_private))
    fragments = flip_weights_byte(flipped)
    message = refusal(flipped, signer_public)
    assert all(fragment in message for fragment in fragments), message
