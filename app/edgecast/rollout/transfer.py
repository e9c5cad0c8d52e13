"""Verified bundle transfer into a node's model store: the controller's half.

The controller checks the bundle completely (every digest, the weights against the architecture,
the reference outputs, and the signature when a public key is given) before anything moves, and
pins the sha256 of the manifest it checked. The node side (the ``edgecast_bundle_store`` module,
standard library only) is first asked whether it already holds exactly that bundle; only when it
does not is an archive sent, which the node unpacks into a staging folder, checks against the
pinned manifest and renames into place. A bundle changed after the check, or damaged on the way,
is refused on the node, so the store only ever receives the bytes verified here.

The ``edgecast_bundle_transfer`` action plugin is a thin adapter around this module.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecast.bundle import BundleError, load_bundle_dir, unpacked
from edgecast.bundle.files import open_file, open_folder, read_bounded
from edgecast.bundle.manifest import manifest_bytes
from edgecast.signing import SigningError, load_public_key
from edgecast.store_rules import DEFAULT_KEEP, DEFAULT_STORE, MANIFEST, option_error


class TransferError(ValueError):
    """The bundle must not move, or the options are wrong; the message says why."""


@dataclass(frozen=True)
class TransferOptions:
    """Where the bundle goes on the node and what the store keeps."""

    store: str = DEFAULT_STORE
    keep: int = DEFAULT_KEEP
    protect: tuple[str, ...] = ()

    def check(self) -> None:
        """Refuses the options the node would refuse, before anything moves."""
        error = option_error(self.store, self.keep, self.protect)
        if error:
            raise TransferError(error)


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle that passed every check on the controller, and how to send it."""

    model_id: str
    manifest_sha256: str
    files: dict[str, dict[str, Any]]
    signed: bool
    manifest_size: int
    source: Path
    # The tar the bundle came in, sent as it is; None for a bundle folder (packed on demand).
    archive: Path | None

    @property
    def size(self) -> int:
        """Bytes of every file, the manifest included."""
        return self.manifest_size + sum(int(entry["size"]) for entry in self.files.values())


def _check(directory: Path, public_key: Any) -> tuple[bytes, dict[str, Any], bool]:
    """Manifest bytes, manifest and signed-ness of the folder, after every edgecast.bundle check.

    The manifest's bytes are read (and hashed) before the check, as the check reads them (never
    through a link, at most MAX_MANIFEST_BYTES), and compared with the manifest the check used,
    so the pinned sha256 is that of the manifest that was verified.
    """
    with open_folder(directory) as folder:
        pinned_bytes = manifest_bytes(folder, directory)
    bundle = load_bundle_dir(directory, public_key)
    try:
        pinned = json.loads(pinned_bytes)
    except (ValueError, UnicodeDecodeError):
        pinned = None
    if pinned != bundle.manifest:
        raise BundleError(f"{MANIFEST} changed while it was being verified; try again")
    return pinned_bytes, bundle.manifest, bundle.signed


def verify(path: Path, public_key_path: Path | None = None) -> VerifiedBundle:
    """Verifies a bundle folder or tar on the controller; raises :class:`TransferError`."""
    path = Path(path)
    try:
        public_key = load_public_key(public_key_path) if public_key_path else None
    except SigningError as exc:
        raise TransferError(str(exc)) from None
    try:
        if path.is_dir():
            manifest_bytes, manifest, signed = _check(path, public_key)
            archive = None
        else:
            with unpacked(path) as directory:
                manifest_bytes, manifest, signed = _check(directory, public_key)
            archive = path
    except BundleError as exc:
        raise TransferError(f"bundle {path} refused: {exc}") from None
    except OSError as exc:
        raise TransferError(f"bundle {path} cannot be read: {exc}") from None
    return VerifiedBundle(
        model_id=str(manifest["model_id"]),
        manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
        files=dict(manifest["files"]),  # type: ignore[call-overload]
        signed=signed,
        manifest_size=len(manifest_bytes),
        source=path,
        archive=archive,
    )


def _tar_info(name: str, size: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.size = 0 if directory else size
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def pack(bundle: VerifiedBundle, workdir: Path) -> Path:
    """The archive to send: the bundle's own tar, or a gzip tar of its folder in ``workdir``.

    The folder's files are read once, never through a link and each at its verified size, and
    checked against the verified manifest as they go into the archive, so the archive holds
    exactly what was verified. The manifest comes first, which lets the node refuse an unlisted
    or wrongly sized member before writing it.
    """
    if bundle.archive is not None:
        return bundle.archive
    archive = Path(workdir) / f"{bundle.model_id}.tar.gz"
    sizes = {MANIFEST: bundle.manifest_size}
    sizes.update((name, int(entry["size"])) for name, entry in bundle.files.items())
    try:
        with (
            tarfile.open(archive, "w:gz", compresslevel=6) as tar,
            open_folder(bundle.source) as folder,
        ):
            tar.addfile(_tar_info(bundle.model_id, 0, directory=True))
            for name in [MANIFEST, *sorted(bundle.files)]:
                with open_file(folder, name, f"{name} is gone since it was verified") as handle:
                    data = read_bounded(handle, name, sizes[name])
                digest = hashlib.sha256(data).hexdigest()
                expected = (
                    bundle.manifest_sha256 if name == MANIFEST else bundle.files[name]["sha256"]
                )
                if digest != expected:
                    raise TransferError(
                        f"{bundle.source / name} changed after it was verified (sha256 {digest}, "
                        f"verified {expected}): verify it again"
                    )
                tar.addfile(_tar_info(f"{bundle.model_id}/{name}", len(data)), io.BytesIO(data))
    except BundleError as exc:
        raise TransferError(f"{bundle.source}: {exc}: verify it again") from None
    return archive


def store_args(
    bundle: VerifiedBundle,
    options: TransferOptions,
    *,
    src: str | None = None,
    probe: bool = False,
) -> dict[str, Any]:
    """Arguments of the node's ``edgecast_bundle_store`` module."""
    args: dict[str, Any] = {
        "store": options.store,
        "model_id": bundle.model_id,
        "manifest_sha256": bundle.manifest_sha256,
        "keep": options.keep,
        "protect": list(options.protect),
        "probe": probe,
        "max_bytes": bundle.size,
    }
    if src is not None:
        args["src"] = src
    return args


def needs_install(probe: dict[str, Any]) -> bool:
    """Whether the node lacks the exact bundle (missing, other manifest, or damaged)."""
    return not probe.get("present", False)


def needs_housekeeping(probe: dict[str, Any]) -> bool:
    """Whether the node's store has leftovers of interrupted runs or bundles to prune."""
    return bool(probe.get("removed") or probe.get("cleaned"))


def outcome(
    bundle: VerifiedBundle,
    node: dict[str, Any],
    *,
    transferred: bool,
    check_mode: bool = False,
) -> dict[str, Any]:
    """The task's result from the node module's answer (the probe's when nothing ran after it)."""
    installed = bool(node.get("installed")) or (check_mode and needs_install(node))
    removed = list(node.get("removed", []))
    cleaned = list(node.get("cleaned", []))
    if installed:
        what = f"{'would be ' if check_mode else ''}installed ({node.get('reason')})"
    else:
        what = "already in the store, intact: nothing transferred"
    extras = []
    if removed:
        extras.append(f"{'would remove' if check_mode else 'removed'} {', '.join(removed)}")
    if cleaned:
        extras.append(
            f"{'would clean' if check_mode else 'cleaned'} leftovers {', '.join(cleaned)}"
        )
    return {
        "changed": bool(installed or removed or cleaned),
        "model_id": bundle.model_id,
        "path": str(node.get("path", "")),
        "manifest_sha256": bundle.manifest_sha256,
        "signed": bundle.signed,
        "transferred": transferred,
        "installed": installed,
        "replaced": bool(node.get("replaced")),
        "removed": removed,
        "cleaned": cleaned,
        "msg": "; ".join([f"{bundle.model_id}: {what}", *extras]),
    }
