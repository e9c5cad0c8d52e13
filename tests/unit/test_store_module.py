"""The node module ``edgecast_bundle_store`` in this process: its plan, and probe, check-mode and
real runs through ``run_module`` (the real containers are in tests/container)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import resource
import sys
import tarfile
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

import edgecast.store_rules
from edgecast_harness.bundle_faults import GIB, tar_opening_with_extended_header
from edgecast_harness.paths import REPO

# What Ansible sends with the module: the same file, under its module_utils name.
sys.modules.setdefault("ansible.module_utils.edgecast_store_rules", edgecast.store_rules)
_spec = importlib.util.spec_from_file_location(
    "edgecast_bundle_store", REPO / "plugins" / "modules" / "edgecast_bundle_store.py"
)
store_module = importlib.util.module_from_spec(_spec)
sys.modules["edgecast_bundle_store"] = store_module
_spec.loader.exec_module(store_module)


def make_bundle(parent: Path, model_id: str, created: str, size: int = 100) -> Path:
    folder = parent / model_id
    folder.mkdir(parents=True)
    data = bytes(range(256)) * (size // 256 + 1)
    (folder / "weights.npz").write_bytes(data[:size])
    files = {"weights.npz": {"size": size, "sha256": hashlib.sha256(data[:size]).hexdigest()}}
    manifest = {"model_id": model_id, "created": created, "files": files}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def digest(bundle: Path) -> str:
    return hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()


def tar_of(bundle: Path, archive: Path) -> Path:
    """The archive as the controller packs it: the folder, then the manifest first."""
    with tarfile.open(archive, "w") as tar:
        tar.add(bundle, arcname=bundle.name, recursive=False)
        for name in ["manifest.json", "weights.npz"]:
            tar.add(bundle / name, arcname=f"{bundle.name}/{name}")
    return archive


def snapshot(store: Path) -> list[tuple[str, bytes]]:
    return sorted(
        (str(path.relative_to(store)), path.read_bytes() if path.is_file() else b"")
        for path in store.rglob("*")
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store with two older bundles and the leftover of an interrupted run."""
    root = tmp_path / "store"
    make_bundle(root, "old-1", "2026-01-01")
    make_bundle(root, "old-2", "2026-01-02")
    (root / ".staging-old-3-x1y2z3").mkdir()
    return root


def run(args: dict, capsys: pytest.CaptureFixture[str]) -> dict:
    """One ``run_module`` call with ``args``; its JSON result."""
    with patch_module_args(args), pytest.raises(SystemExit):
        store_module.run_module()
    return json.loads(capsys.readouterr().out)


def test_the_plan_of_a_store_that_lacks_the_bundle(store, tmp_path):
    new = make_bundle(tmp_path / "cloud", "new", "2026-02-01")
    plan = store_module.plan_changes(str(store), "new", digest(new), 2, [])
    assert plan == store_module.Plan(
        reason="not in the store",
        replace=False,
        clean=[".staging-old-3-x1y2z3"],
        prune=["old-1"],
    )
    assert plan.changes


def test_the_plan_of_a_store_holding_the_bundle_intact(tmp_path):
    bundle = make_bundle(tmp_path / "store", "m1", "2026-02-01")
    plan = store_module.plan_changes(str(tmp_path / "store"), "m1", digest(bundle), 3, [])
    assert plan == store_module.Plan()
    assert not plan.changes


def test_the_plan_replaces_a_damaged_bundle_and_keeps_protected_ones(store):
    damaged = make_bundle(store, "m1", "2026-02-01")
    verified = digest(damaged)
    (damaged / "weights.npz").write_bytes(b"changed")
    plan = store_module.plan_changes(str(store), "m1", verified, 1, ["old-1"])
    assert plan.replace
    assert plan.reason.startswith("weights.npz: 7 bytes")
    assert plan.prune == ["old-2"]


def test_probe_check_and_real_runs_share_one_plan(store, tmp_path, capsys):
    new = make_bundle(tmp_path / "cloud", "new", "2026-02-01")
    args = {
        "store": str(store),
        "model_id": "new",
        "manifest_sha256": digest(new),
        "src": str(tar_of(new, tmp_path / "new.tar")),
        "keep": 2,
        "protect": [],
    }
    planned = {
        "present": False,
        "reason": "not in the store",
        "replaced": False,
        "removed": ["old-1"],
        "cleaned": [".staging-old-3-x1y2z3"],
    }
    before = snapshot(store)

    probe = run({**args, "probe": True}, capsys)
    assert probe.items() >= {**planned, "changed": False, "installed": False}.items()
    check = run({**args, "_ansible_check_mode": True}, capsys)
    assert check.items() >= {**planned, "changed": True, "installed": True}.items()
    assert snapshot(store) == before

    real = run(args, capsys)
    assert real.items() >= {**planned, "changed": True, "installed": True}.items()
    assert sorted(p.name for p in store.iterdir()) == ["new", "old-2"]
    assert (store / "new" / "weights.npz").read_bytes() == (new / "weights.npz").read_bytes()

    again = run(args, capsys)
    settled = {"present": True, "reason": "", "removed": [], "cleaned": [], "installed": False}
    assert again.items() >= {**settled, "changed": False}.items()
    assert run({**args, "_ansible_check_mode": True}, capsys)["changed"] is False


def test_a_real_run_without_src_fails_before_changing_anything(store, tmp_path, capsys):
    new = make_bundle(tmp_path / "cloud", "new", "2026-02-01")
    before = snapshot(store)
    failed = run({"store": str(store), "model_id": "new", "manifest_sha256": digest(new)}, capsys)
    assert failed["failed"] is True
    assert failed["msg"] == "new must be installed (not in the store) but no src was given"
    assert failed["changed"] is False
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"store": "models"}, "store must be an absolute path"),
        ({"keep": 0}, "keep must be at least 1"),
        ({"protect": ["../etc"]}, "protect holds names that are not model ids"),
        ({"model_id": ".hidden"}, "is not a safe folder name"),
        ({"manifest_sha256": "abc"}, "64 hexadecimal digits"),
    ],
)
def test_bad_arguments_are_refused(args, message, tmp_path, capsys):
    base = {"store": str(tmp_path), "model_id": "m1", "manifest_sha256": "0" * 64}
    failed = run({**base, **args}, capsys)
    assert failed["failed"] is True
    assert message in failed["msg"]
    assert list(tmp_path.iterdir()) == []


def _member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("/etc/passwd"), "absolute"),
        (_member("m1/../../etc/cron.d/x"), "climbs out"),
        (_member("m1/weights.npz", tarfile.SYMTYPE), "is a link"),
        (_member("m1/weights.npz", tarfile.LNKTYPE), "is a link"),
        (_member("m1/dev", tarfile.CHRTYPE), "not a regular file"),
        (_member("m1/fifo", tarfile.FIFOTYPE), "not a regular file"),
        (_member("m1/sub/weights.npz"), "nested"),
        (_member("other/weights.npz"), "outside the bundle folder"),
        (_member("weights.npz"), "outside the bundle folder"),
    ],
)
def test_unsafe_archive_members_are_refused(member, message, tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        data = b"x" * member.size if member.isreg() else b""
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(store_module.StoreError, match=message):
        store_module.unpack(str(archive), str(staging), "m1", "0" * 64, 1 << 20)
    assert list(staging.iterdir()) == []


def test_the_size_limit_stops_a_member_before_it_is_written(tmp_path):
    bundle = make_bundle(tmp_path / "cloud", "m1", "2026-02-01", size=50_000)
    archive = tar_of(bundle, tmp_path / "bundle.tar")
    staging = tmp_path / "staging"
    staging.mkdir()
    limit = 10_000
    with pytest.raises(store_module.StoreError, match="exceed max_bytes"):
        store_module.unpack(str(archive), str(staging), "m1", digest(bundle), limit)
    assert sum(p.stat().st_size for p in staging.iterdir()) <= limit


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.mark.parametrize(
    "kind",
    [tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK],
    ids=["pax", "pax-global", "gnu-long-name", "gnu-long-link"],
)
def test_an_extended_header_of_a_gib_is_refused_before_it_is_read(kind, tmp_path):
    """tarfile would read the whole gibibyte into memory to parse it; it is refused from its
    512-byte block, the peak RSS as it was. (A compressed archive gets past the module's check of
    the src file's size, so the archive's size is no guard here.)"""
    archive = tmp_path / "hostile.tar"
    tar_opening_with_extended_header(archive, kind)
    staging = tmp_path / "staging"
    staging.mkdir()
    before = peak_rss_kb()
    with pytest.raises(store_module.StoreError) as refused:
        store_module.unpack(str(archive), str(staging), "m1", "0" * 64, 1 << 20)
    growth_kb = peak_rss_kb() - before
    assert str(refused.value) == (
        f"the archive has an extended header (pax or GNU long name, type '{kind.decode()}') "
        f"of {GIB} bytes; a bundle archive's may hold at most 65536"
    )
    assert growth_kb < 50 * 1024, f"peak RSS grew {growth_kb} kB"
    assert list(staging.iterdir()) == []


def test_a_gnu_sparse_member_is_refused_before_its_map_is_read(tmp_path):
    archive = tmp_path / "sparse.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_member("m1/weights.npz", tarfile.GNUTYPE_SPARSE))
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(store_module.StoreError, match="is a sparse file"):
        store_module.unpack(str(archive), str(staging), "m1", "0" * 64, 1 << 20)
