"""Broken, tampered and unsafe bundles are refused with a message that says what is wrong.

Each fault is checked twice, against real components only: ``edgecast verify`` must exit 1 and
name the fault on stderr, and a running predictor (a real ``edgecast serve`` process) asked to
swap to the faulty bundle through the admin API must answer 422 with the same specific message
while it keeps serving the model it had.

The predictors are module-scoped (one unsigned, one requiring signatures, one on LiteRT for the
hostile bundles, whose peak memory is measured across them) so that the whole fault table costs
three predictor starts; ``start_predictor`` is function-scoped, so they are launched here the
same way it launches them. A faulty bundle is moved into a predictor's store, never copied, so
that a sparse gibibyte stays sparse.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgecast_harness.bundle_faults import (
    ARCHIVE_FAULTS,
    DIRECTORY_FAULTS,
    HOSTILE_FAULTS,
    MALFORMED_FAULTS,
    ArchiveFault,
    Fault,
    by_name,
    clone_bundle,
    flip_weights_byte,
    loosen_signed_parity,
    nan_weight,
    read_manifest,
    refusal_problems,
    tar_with_symlink,
    tar_with_traversal,
)
from edgecast_harness.bundles import TrainedStore
from edgecast_harness.predictor import Predictor, PredictorLauncher, edgecast

SWAP = "/admin/v1/models"
# How much the predictor's peak memory may grow over all the hostile bundles together.
HOSTILE_RSS_GROWTH_KB = 50 * 1024


@dataclass
class Serving:
    """A running predictor, its model store, and the good model it serves."""

    predictor: Predictor
    store: Path
    model_id: str


@dataclass
class Keys:
    signer: Path
    signer_public: Path
    signer_id: str
    other: Path
    other_id: str


def launch_predictor(store: Path, log_dir: Path, *args: str) -> Predictor:
    """Starts ``edgecast serve`` with the admin API on, as ``start_predictor(admin=True)`` does."""
    launcher = PredictorLauncher(log_dir)
    try:
        return launcher.start(store, *args, admin=True)
    except BaseException:
        launcher.stop_all()
        raise


def keygen(directory: Path, name: str) -> tuple[Path, Path, str]:
    private, public = directory / f"{name}.pem", directory / f"{name}.pub.pem"
    result = edgecast("keygen", "--private", str(private), "--public", str(public))
    key_id = result.stdout.split()[2].rstrip(":")  # "key id <id>: private key ..."
    return private, public, key_id


def sign(bundle: Path, key: Path) -> None:
    edgecast("sign", str(bundle), "--key", str(key))
    assert "signature" in read_manifest(bundle)


def good_bundle(trained_store: TrainedStore) -> Path:
    return trained_store.root / trained_store.model_ids[0]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    directory = tmp_path_factory.mktemp("keys")
    signer, signer_public, signer_id = keygen(directory, "signer")
    other, _, other_id = keygen(directory, "other")
    assert signer_id != other_id
    return Keys(signer, signer_public, signer_id, other, other_id)


@pytest.fixture(scope="module")
def serving(
    trained_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Serving]:
    """A predictor without a public key, serving the good (unsigned) bundle."""
    model_id = trained_store.model_ids[0]
    store = trained_store.copy_to(tmp_path_factory.mktemp("fault-store"), model_id)
    logs = tmp_path_factory.mktemp("fault-predictor")
    predictor = launch_predictor(store, logs, "--model-id", model_id)
    yield Serving(predictor, store, model_id)
    predictor.stop()


@pytest.fixture(scope="module")
def signed_serving(
    trained_store: TrainedStore, keys: Keys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Serving]:
    """A predictor that requires the signer's signature, serving a signed good bundle."""
    store = tmp_path_factory.mktemp("signed-store")
    bundle = clone_bundle(good_bundle(trained_store), store, "signed-good")
    sign(bundle, keys.signer)
    logs = tmp_path_factory.mktemp("signed-predictor")
    predictor = launch_predictor(
        store, logs, "--model-id", bundle.name, "--public-key", str(keys.signer_public)
    )
    yield Serving(predictor, store, bundle.name)
    predictor.stop()


def verify_refuses(bundle: Path, fragments: list[str], *args: str) -> str:
    """``edgecast verify`` exits 1 and its stderr names the fault; returns the stderr."""
    result = edgecast("verify", str(bundle), *args, check=False)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert f"REFUSED {bundle}: " in result.stderr, result.stderr
    message = result.stderr.split(f"REFUSED {bundle}: ", 1)[1].strip()  # after any TF logging
    assert not refusal_problems(message, fragments), (refusal_problems(message, fragments), message)
    return result.stderr


def assert_still_serving(serving: Serving, body: dict) -> None:
    predictor = serving.predictor
    ready = predictor.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["model_id"] == serving.model_id
    response = predictor.post("/v1/predict", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_id"] == serving.model_id
    assert len(answer["forecast_kwh"]) == 24


def predictor_refuses(
    serving: Serving, bundle: Path, fragments: list[str], body: dict
) -> dict[str, object]:
    """Moves ``bundle`` into the store, asks for a swap: 422, specific, old model still serves."""
    bundle.rename(serving.store / bundle.name)
    response = serving.predictor.admin(SWAP, {"model_id": bundle.name})
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["serving_model_id"] == serving.model_id, answer
    error = str(answer["error"])
    assert error.startswith("bundle refused: "), answer
    message = error.removeprefix("bundle refused: ")
    assert not refusal_problems(message, fragments), (refusal_problems(message, fragments), answer)
    assert_still_serving(serving, body)
    return answer


# --- controls: the fault injection itself leaves good bundles good ----------------------------


def test_clean_clone_is_accepted_by_verify_and_by_a_swap(
    trained_store: TrainedStore, serving: Serving, body: dict, tmp_path: Path
) -> None:
    """A renamed copy with no fault passes every check, so each refusal below is the fault's."""
    clone = clone_bundle(good_bundle(trained_store), tmp_path, "clean-clone")
    result = edgecast("verify", str(clone), "--runtime", "keras")
    assert "keras: parity ok" in result.stdout
    shutil.copytree(clone, serving.store / clone.name)
    try:
        swapped = serving.predictor.admin(SWAP, {"model_id": clone.name})
        assert swapped.status_code == 200, swapped.text
        assert swapped.json()["model_id"] == clone.name
    finally:
        back = serving.predictor.admin(SWAP, {"model_id": serving.model_id})
        assert back.status_code == 200, back.text
    assert_still_serving(serving, body)


def test_packed_good_bundle_verifies(trained_store: TrainedStore, tmp_path: Path) -> None:
    archive = tmp_path / "good.tar.gz"
    edgecast("pack", str(good_bundle(trained_store)), "-o", str(archive))
    result = edgecast("verify", str(archive), "--runtime", "none")
    assert "files match their sha256" in result.stdout


# --- faults in a bundle directory -------------------------------------------------------------


@pytest.mark.parametrize("fault", by_name(DIRECTORY_FAULTS))
def test_faulty_bundle_is_refused_and_old_model_keeps_serving(
    fault: Fault, trained_store: TrainedStore, serving: Serving, body: dict, tmp_path: Path
) -> None:
    bundle, fragments = fault.injected_copy(good_bundle(trained_store), tmp_path, "faulty")
    verify_refuses(bundle, fragments)
    predictor_refuses(serving, bundle, fragments, body)


# --- signatures -------------------------------------------------------------------------------


def _modified_after_signing(bundle: Path, keys: Keys) -> list[str]:
    sign(bundle, keys.signer)
    loosen_signed_parity(bundle)
    return [
        "bad signature",
        f"(key id {keys.signer_id}) does not verify",
        "modified or signed by another key",
    ]


def _signed_by_another_key(bundle: Path, keys: Keys) -> list[str]:
    sign(bundle, keys.other)
    return [
        "bad signature",
        f"(key id {keys.other_id}) does not verify",
        f"public key (key id {keys.signer_id})",
    ]


def _unsigned(bundle: Path, keys: Keys) -> list[str]:
    return ["bundle is unsigned", "signature required"]


def _weights_modified_after_signing(bundle: Path, keys: Keys) -> list[str]:
    """The signature still verifies (the manifest is intact): the digest must catch it."""
    sign(bundle, keys.signer)
    return flip_weights_byte(bundle)


SignatureFault = Callable[[Path, Keys], list[str]]


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(_modified_after_signing, id="manifest-modified-after-signing"),
        pytest.param(_signed_by_another_key, id="signed-by-another-key"),
        pytest.param(_unsigned, id="unsigned-when-a-key-is-configured"),
        pytest.param(_weights_modified_after_signing, id="weights-modified-after-signing"),
    ],
)
def test_signature_fault_is_refused_and_old_model_keeps_serving(
    fault: SignatureFault,
    trained_store: TrainedStore,
    keys: Keys,
    signed_serving: Serving,
    body: dict,
    tmp_path: Path,
) -> None:
    bundle = clone_bundle(good_bundle(trained_store), tmp_path, f"faulty-{fault.__name__[1:]}")
    fragments = fault(bundle, keys)
    verify_refuses(bundle, fragments, "--public-key", str(keys.signer_public))
    predictor_refuses(signed_serving, bundle, fragments, body)


def test_signed_bundle_is_refused_without_a_configured_public_key(
    trained_store: TrainedStore, keys: Keys, serving: Serving, body: dict, tmp_path: Path
) -> None:
    bundle = clone_bundle(good_bundle(trained_store), tmp_path, "signed-but-no-key-configured")
    sign(bundle, keys.signer)
    fragments = [f"bundle is signed (key id {keys.signer_id})", "no public key is configured"]
    verify_refuses(bundle, fragments)
    predictor_refuses(serving, bundle, fragments, body)


def test_correctly_signed_bundle_is_accepted_with_the_key(
    trained_store: TrainedStore, keys: Keys, tmp_path: Path
) -> None:
    """Control for the signature faults: signing itself gives a bundle that verifies."""
    bundle = clone_bundle(good_bundle(trained_store), tmp_path, "signed-ok")
    sign(bundle, keys.signer)
    result = edgecast(
        "verify", str(bundle), "--public-key", str(keys.signer_public), "--runtime", "none"
    )
    assert "signature verified" in result.stdout


# --- unsafe tar archives ----------------------------------------------------------------------


def test_tar_with_path_traversal_member_is_refused_and_writes_nothing_outside(
    trained_store: TrainedStore, tmp_path: Path
) -> None:
    escape_name = f"edgecast-escaped-{uuid.uuid4().hex}.txt"
    archive = tmp_path / "traversal.tar.gz"
    member = tar_with_traversal(good_bundle(trained_store), archive, escape_name)
    verify_refuses(
        archive, ["cannot unpack", repr(member), "outside the destination"], "--runtime", "none"
    )
    # The CLI unpacks into a fresh folder under the temp dir; the member aims at its parent.
    assert not (Path(tempfile.gettempdir()) / escape_name).exists()
    assert not (tmp_path.parent / escape_name).exists()


def test_tar_with_symlink_member_is_refused(trained_store: TrainedStore, tmp_path: Path) -> None:
    archive = tmp_path / "symlink.tar.gz"
    member = tar_with_symlink(good_bundle(trained_store), archive)
    verify_refuses(archive, [f"member {member!r} is not a file or folder"], "--runtime", "none")


# --- the model_id a swap asks for is the model_id that serves ---------------------------------


def test_store_folder_whose_manifest_names_another_model_is_refused(
    trained_store: TrainedStore, serving: Serving, body: dict
) -> None:
    """Asking for model X must never make a bundle whose manifest says Y serve.

    The store finds a bundle by its folder name while the manifest (the signed part) holds the
    model_id, so the two must agree, or an old signed bundle could be served under a new name.
    """
    other_id = trained_store.model_ids[1]
    folder = f"renamed-{other_id}"
    shutil.copytree(trained_store.root / other_id, serving.store / folder)
    response = serving.predictor.admin(SWAP, {"model_id": folder})
    try:
        assert response.status_code == 422, (
            f"asked to serve {folder!r}, the predictor answered {response.status_code} and "
            f"now serves {response.json().get('model_id')!r} (the manifest's model_id)"
        )
        error = str(response.json()["error"])
        assert folder in error, error
        assert other_id in error, error
    finally:
        if response.status_code == 200:
            back = serving.predictor.admin(SWAP, {"model_id": serving.model_id})
            assert back.status_code == 200, back.text
    assert_still_serving(serving, body)


# --- malformed content behind valid digests: refused, never a crash ---------------------------


@pytest.mark.parametrize("fault", by_name(MALFORMED_FAULTS))
def test_malformed_file_with_valid_digests_is_refused_not_crashed(
    fault: Fault, trained_store: TrainedStore, serving: Serving, body: dict, tmp_path: Path
) -> None:
    """A broken file that a cloud build hashed as it was must be a refusal, not a traceback."""
    bundle, fragments = fault.injected_copy(good_bundle(trained_store), tmp_path, "malformed")
    cli = edgecast("verify", str(bundle), check=False)
    shutil.copytree(bundle, serving.store / bundle.name)
    swap = serving.predictor.admin(SWAP, {"model_id": bundle.name})
    # The swap is all-or-nothing even when the loader crashes: the old model keeps serving.
    assert_still_serving(serving, body)
    problems = []
    if (
        cli.returncode != 1
        or "Traceback" in cli.stderr
        or not all(fragment in cli.stderr for fragment in fragments)
    ):
        last = cli.stderr.strip().splitlines()[-1] if cli.stderr.strip() else ""
        problems.append(f"`edgecast verify` exited {cli.returncode}, stderr ending {last!r}")
    error = str(swap.json().get("error", ""))
    if swap.status_code != 422 or not all(fragment in error for fragment in fragments):
        problems.append(f"the admin swap answered HTTP {swap.status_code} {swap.json()}")
    assert not problems, f"expected a refusal naming {fragments}, but " + "; ".join(problems)


def test_predictor_starting_on_an_unreadable_weights_archive_says_why_it_is_not_ready(
    trained_store: TrainedStore, start_predictor: Callable[..., Predictor], tmp_path: Path
) -> None:
    """A predictor whose first model is refused stays alive, not ready, and says why."""
    store = tmp_path / "store"
    bundle = clone_bundle(good_bundle(trained_store), store, "unreadable-weights")
    fragments = MALFORMED_FAULTS[0].inject(bundle)
    predictor = start_predictor(store, "--model-id", bundle.name, wait=False)
    predictor.wait_alive()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log = predictor.log()
        if "model refused" in log or "Traceback" in log:
            break
        time.sleep(0.1)
    ready = predictor.get("/readyz")
    assert ready.status_code == 503, ready.text
    reason = str(ready.json()["reason"])
    assert "model refused" in reason and all(f in reason for f in fragments), (
        f"/readyz gives the reason {reason!r}. Log tail: {predictor.log()[-600:]!r}"
    )


# --- hostile bundles: refused by name, before they cost the predictor memory or time ----------


@dataclass
class Hostile:
    """The predictor the hostile bundles are offered to, its warmed-up peak RSS, and the faults
    it has refused so far."""

    serving: Serving
    baseline_kb: int
    refused: set[str]


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


@pytest.fixture(scope="module")
def hostile(
    golden_bundle: Path, body: dict, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hostile]:
    """A LiteRT predictor serving the golden bundle, warmed up (a forecast, and a swap refused
    after every file was read and parsed) before its peak RSS is taken as the baseline."""
    store = tmp_path_factory.mktemp("hostile-store")
    shutil.copytree(golden_bundle, store / golden_bundle.name)
    logs = tmp_path_factory.mktemp("hostile-predictor")
    predictor = launch_predictor(
        store, logs, "--model-id", golden_bundle.name, "--runtime", "litert"
    )
    serving = Serving(predictor, store, golden_bundle.name)
    warm_up = clone_bundle(golden_bundle, tmp_path_factory.mktemp("warm-up"), "warm-up")
    predictor_refuses(serving, warm_up, nan_weight(warm_up), body)
    yield Hostile(serving, peak_rss_kb(predictor.pid), set())
    predictor.stop()


@pytest.mark.parametrize("fault", by_name(HOSTILE_FAULTS))
def test_hostile_bundle_is_refused_and_old_model_keeps_serving(
    fault: Fault, golden_bundle: Path, hostile: Hostile, body: dict, tmp_path: Path
) -> None:
    bundle, fragments = fault.injected_copy(golden_bundle, tmp_path, "hostile")
    verify_refuses(bundle, fragments)
    predictor_refuses(hostile.serving, bundle, fragments, body)
    hostile.refused.add(fault.name)


def test_store_entry_linking_outside_the_store_is_refused(
    golden_bundle: Path, hostile: Hostile, body: dict, tmp_path: Path
) -> None:
    """A good bundle outside the store, linked into it: refused, wherever the link points."""
    outside = clone_bundle(golden_bundle, tmp_path, "linked-from-outside")
    (hostile.serving.store / outside.name).symlink_to(outside)
    response = hostile.serving.predictor.admin(SWAP, {"model_id": outside.name})
    assert response.status_code == 422, response.text
    assert "'linked-from-outside' in the model store" in response.json()["error"]
    assert "is a symbolic link" in response.json()["error"]
    assert_still_serving(hostile.serving, body)


def test_hostile_bundles_leave_the_predictor_s_peak_memory_as_it_was(
    golden_bundle: Path,
    hostile: Hostile,
    tmp_path: Path,
) -> None:
    """VmHWM grows less than HOSTILE_RSS_GROWTH_KB over every hostile bundle (each one offered
    here that a selection left out above), where reading them whole would cost gigabytes."""
    for fault in HOSTILE_FAULTS:
        if fault.name not in hostile.refused:
            bundle, _ = fault.injected_copy(golden_bundle, tmp_path, "hostile")
            bundle.rename(hostile.serving.store / bundle.name)
            response = hostile.serving.predictor.admin(SWAP, {"model_id": bundle.name})
            assert response.status_code == 422, (fault.name, response.text)
    peak = peak_rss_kb(hostile.serving.predictor.pid)
    growth = peak - hostile.baseline_kb
    print(
        f"predictor VmHWM: {hostile.baseline_kb} kB warmed up, {peak} kB after the hostile bundles"
    )
    assert growth < HOSTILE_RSS_GROWTH_KB, (
        f"the predictor's peak RSS grew {growth} kB over the hostile bundles "
        f"({hostile.baseline_kb} kB -> {peak} kB)"
    )


def make_unreadable(folder: Path) -> None:
    """Takes ``folder`` out of reach of an unprivileged predictor: another user's (the image's
    uid) without access for others; or, for a user who cannot give files away, no access."""
    if os.geteuid() == 0:
        os.chown(folder, 10001, 10001)
        folder.chmod(0o700)
    else:
        folder.chmod(0o000)


def test_a_bundle_the_predictor_may_not_read_gets_a_json_422_and_old_model_keeps_serving(
    golden_bundle: Path, body: dict, start_predictor: Callable[..., Predictor], tmp_path: Path
) -> None:
    """A store entry the predictor's user may not open (written by root with a tight mode, say):
    a swap to it is refused by name, never a 500."""
    store = tmp_path / "store"
    shutil.copytree(golden_bundle, store / golden_bundle.name)
    locked = clone_bundle(golden_bundle, store, "not-readable")
    predictor = start_predictor(
        store, "--model-id", golden_bundle.name, "--runtime", "litert",
        admin=True, unprivileged=True,
    )  # fmt: skip
    make_unreadable(locked)
    try:
        response = predictor.admin(SWAP, {"model_id": locked.name})
    finally:
        locked.chmod(0o700)
    assert response.status_code == 422, response.text
    assert response.json() == {
        "error": f"bundle refused: model 'not-readable' in the model store {store} cannot be "
        "read: Permission denied",
        "status": 422,
        "serving_model_id": golden_bundle.name,
    }
    assert_still_serving(Serving(predictor, store, golden_bundle.name), body)


@pytest.mark.parametrize("fault", by_name(ARCHIVE_FAULTS))
def test_hostile_archive_is_refused_by_verify_leaving_nothing_behind(
    fault: ArchiveFault, golden_bundle: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "hostile.tar.gz"
    fragments = fault.build(golden_bundle, archive)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = edgecast(
        "verify", str(archive), "--runtime", "none", check=False,
        env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"REFUSED {archive}: " in result.stderr, result.stderr
    message = result.stderr.split(f"REFUSED {archive}: ", 1)[1].strip()
    assert not refusal_problems(message, fragments), (refusal_problems(message, fragments), message)
    assert list(scratch.iterdir()) == []
