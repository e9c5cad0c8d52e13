#!/usr/bin/python
"""Module ``edgecast_bundle_store``: install a verified model bundle into a node's model store.

Runs on the edge node with the Python standard library only (no edgecast package there) and
must keep working on Python 3.8 (Ubuntu 20.04): annotations are never evaluated, and no newer
syntax or standard library API is used. The store's rules (which folders are bundles, their
order, leftovers, pruning) are ``edgecast_store_rules``, the same file the predictor reads the
store with; Ansible sends it along with this module.

Nothing half-copied is ever visible under ``<store>/<model_id>``: the archive is unpacked into
``<store>/.staging-<model_id>-<random>``, every file is checked against the manifest, whose own
sha256 must be the one the controller verified, then files and folder are flushed to disk and
the folder is renamed into place.

Every run first plans what would change (:func:`plan_changes`); a probe or a check-mode run
reports that plan, a real run applies it (:func:`apply_plan`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from typing import IO

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edgecast_store_rules import (
    DEFAULT_KEEP,
    DEFAULT_STORE,
    MANIFEST,
    MAX_ARCHIVE_MEMBERS,
    MAX_BUNDLE_BYTES,
    MAX_MANIFEST_BYTES,
    REPLACED_PREFIX,
    STAGING_PREFIX,
    CappedTarInfo,
    StoreError,
    is_model_id,
    leftovers,
    list_bundles,
    open_regular,
    option_error,
    prune_plan,
    read_regular,
)

DOCUMENTATION = r"""
module: edgecast_bundle_store
short_description: Install a model bundle into a node's model store, atomically
description:
  - Unpacks a bundle archive (one folder named by the model_id) into a staging folder inside
    the store, refuses unsafe members (absolute paths, C(..), links, devices, nested folders,
    more than O(max_bytes) bytes, more members than a bundle has, extended headers larger
    than 64 KiB), checks every file's size and
    sha256 against C(manifest.json) and the manifest's own sha256 against O(manifest_sha256),
    flushes files and folder to disk, then renames the folder to C(<store>/<model_id>).
  - A folder of the same name that is not exactly this bundle (other manifest, a tampered,
    missing or extra file) is replaced. The old folder is renamed aside, the new one renamed in,
    then the old one is removed, so the name never shows a half-written bundle.
  - Leftovers of interrupted runs (C(.staging-*), C(.replaced-*)) are removed. Every change
    happens under an exclusive lock on the store folder, so a leftover is never a live run.
  - Old bundles are pruned. The bundle just installed, the O(keep) - 1 newest other bundles
    (by the manifest's C(created), then name) and every O(protect)ed model stay.
  - Usually called by the C(edgecast_bundle_transfer) action, which verifies the bundle on the
    controller and transfers the archive only when the node lacks the bundle.
  - Needs only the Python standard library; runs on Python 3.8 and later.
options:
  store:
    description: The model store folder on the node; created (mode 0755) when missing.
    type: path
    default: /var/lib/edgecast/models
  model_id:
    description: The bundle's model_id; the archive's single top folder must carry this name.
    type: str
    required: true
  manifest_sha256:
    description: sha256 of the bundle's C(manifest.json) as verified on the controller.
    type: str
    required: true
  src:
    description:
      - The bundle archive (tar, optionally gzip, bzip2 or xz compressed) on the node, read once
        from start to end.
      - Needed only when the store does not already hold this exact bundle.
    type: path
  keep:
    description: Bundles to keep, counting the one installed; older ones are removed.
    type: int
    default: 3
  protect:
    description: Model ids never removed by pruning (for example the one serving).
    type: list
    elements: str
    default: []
  probe:
    description:
      - Only report whether the exact bundle is installed and what would be cleaned or pruned;
        never change anything.
    type: bool
    default: false
  max_bytes:
    description:
      - Largest total size of the files in the archive, the manifest included.
      - The default is the most any bundle may hold, the same bound the predictor and
        C(edgecast verify) apply.
    type: int
    default: 83886080
  lock_timeout:
    description: Seconds to wait for another run holding the store's lock.
    type: int
    default: 120
attributes:
  check_mode:
    support: full
"""

EXAMPLES = r"""
- name: Install a bundle archive already copied to the node
  edgecast_bundle_store:
    store: /var/lib/edgecast/models
    model_id: sbn-b13-20261127-034844-a479dd58
    manifest_sha256: 0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0
    src: /tmp/sbn-b13-20261127-034844-a479dd58.tar.gz
    keep: 3
    protect: [sbn-b13-20261120-101010-0badc0de]
"""

RETURN = r"""
model_id:
  description: The bundle's model_id.
  type: str
  returned: always
path:
  description: Folder of the bundle in the store.
  type: str
  returned: always
present:
  description: Whether the store held this exact bundle, intact, when the module started.
  type: bool
  returned: always
installed:
  description: Whether this run installed the bundle (in check mode, would install it; with
    O(probe), always false).
  type: bool
  returned: always
reason:
  description: Why the bundle is not present as verified; empty when it is.
  type: str
  returned: always
replaced:
  description: Whether a different or damaged folder of the same name was replaced.
  type: bool
  returned: always
removed:
  description: Model ids removed (or, with O(probe) or in check mode, to be removed) by pruning.
  type: list
  elements: str
  returned: always
cleaned:
  description: Leftovers of interrupted runs removed (or to be removed).
  type: list
  elements: str
  returned: always
"""

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20
FILE_MODE = 0o644
DIR_MODE = 0o755


def _digest_copy(
    source: IO[bytes], target: IO[bytes] | None = None, keep: bool = False
) -> tuple[str, int, bytes]:
    """sha256 and size of what ``source`` holds, read a chunk at a time and written on to
    ``target`` when there is one; the bytes themselves when ``keep``."""
    digest = hashlib.sha256()
    size = 0
    kept = []
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
        if target is not None:
            target.write(chunk)
        if keep:
            kept.append(chunk)
    return digest.hexdigest(), size, b"".join(kept)


def _digest_file(path: str) -> tuple[str, int]:
    with os.fdopen(open_regular(path), "rb") as handle:
        digest, size, _ = _digest_copy(handle)
    return digest, size


def parse_manifest(data: bytes, model_id: str) -> dict[str, dict[str, object]]:
    """The manifest's file table, after checking it names ``model_id`` and safe file names."""
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{MANIFEST} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise StoreError(f"{MANIFEST} must hold a JSON object")
    if manifest.get("model_id") != model_id:
        raise StoreError(f"{MANIFEST} names model_id {manifest.get('model_id')!r}, not {model_id}")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise StoreError(f"{MANIFEST} has no 'files' table")
    for name, entry in files.items():
        if not isinstance(name, str) or "/" in name or name in ("", ".", "..", MANIFEST):
            raise StoreError(f"{MANIFEST} lists an unsafe file name {name!r}")
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("size"), int)
            or not isinstance(entry.get("sha256"), str)
        ):
            raise StoreError(f"{MANIFEST} entry {name!r} has no size and sha256")
    return files


def check_installed(path: str, model_id: str, manifest_sha256: str) -> str:
    """Why ``path`` is not exactly the verified bundle; an empty string when it is."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "not in the store"
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a folder"
    try:
        data = read_regular(os.path.join(path, MANIFEST), MAX_MANIFEST_BYTES)
        found = hashlib.sha256(data).hexdigest()
        if found != manifest_sha256:
            return f"{MANIFEST} has sha256 {found}, not the verified {manifest_sha256}"
        files = parse_manifest(data, model_id)
        present = set(os.listdir(path)) - {MANIFEST}
        unexpected = sorted(present - set(files))
        if unexpected:
            return f"unexpected file(s) {unexpected} not listed in the manifest"
        for name, entry in sorted(files.items()):
            if name not in present:
                return f"missing file {name!r}"
            digest, size = _digest_file(os.path.join(path, name))
            if size != entry["size"] or digest != entry["sha256"]:
                return (
                    f"{name}: {size} bytes with sha256 {digest}, the manifest says "
                    f"{entry['size']} bytes with sha256 {entry['sha256']} (altered on the node)"
                )
    except FileNotFoundError:
        return f"no {MANIFEST}"
    except (StoreError, OSError) as exc:
        return str(exc)
    return ""


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _member_name(member: tarfile.TarInfo, model_id: str) -> str:
    """The bundle file a member holds; "" for the top folder itself. Refuses anything else."""
    name = member.name
    if name.startswith("/") or "\\" in name:
        raise StoreError(f"archive member {name!r} has an absolute or non-POSIX path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise StoreError(f"archive member {name!r} climbs out of the bundle folder")
    if member.issym() or member.islnk():
        raise StoreError(f"archive member {name!r} is a link; bundles hold regular files only")
    if member.isdir() and (not parts or parts == [model_id]):
        return ""
    if not parts or parts[0] != model_id:
        raise StoreError(f"archive member {name!r} is outside the bundle folder {model_id}/")
    if len(parts) != 2:
        raise StoreError(f"archive member {name!r}: bundles hold no nested folders")
    if not member.isreg() or member.issparse():
        raise StoreError(f"archive member {name!r} is not a regular file")
    return parts[1]


def _write(source: IO[bytes], path: str, keep: bool) -> tuple[str, int, bytes]:
    """Copies ``source`` to a new file at ``path``, flushed to disk; returns sha256 and size
    (and the bytes themselves when ``keep``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "wb") as target:
        copied = _digest_copy(source, target, keep)
        target.flush()
        os.fchmod(target.fileno(), FILE_MODE)
        os.fsync(target.fileno())
    return copied


def unpack(
    src: str, staging: str, model_id: str, manifest_sha256: str, max_bytes: int
) -> dict[str, tuple[str, int]]:
    """Writes the archive's bundle files into ``staging``; returns their (sha256, size).

    The manifest must have the verified sha256; once it has been read, every later member must
    be listed in it with that size, so nothing the manifest does not expect is written.
    """
    written: dict[str, tuple[str, int]] = {}
    files = None
    total = 0
    count = 0
    with tarfile.open(src, mode="r|*", tarinfo=CappedTarInfo) as archive:
        for member in archive:
            count += 1
            if count > MAX_ARCHIVE_MEMBERS:
                raise StoreError(f"the archive holds more than {MAX_ARCHIVE_MEMBERS} members")
            name = _member_name(member, model_id)
            if not name:
                continue
            if name in written:
                raise StoreError(f"archive member {member.name!r} appears twice")
            if member.size > max_bytes - total:
                raise StoreError(f"the archive's files exceed max_bytes ({max_bytes} bytes)")
            if name == MANIFEST and member.size > MAX_MANIFEST_BYTES:
                raise StoreError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
            if files is not None and name not in files:
                raise StoreError(f"unexpected file {name!r} not listed in the manifest")
            if files is not None and member.size != files[name]["size"]:
                raise StoreError(
                    f"{name}: {member.size} bytes but the manifest says {files[name]['size']}"
                )
            total += member.size
            source = archive.extractfile(member)
            if source is None:
                raise StoreError(f"archive member {member.name!r} has no content")
            digest, size, content = _write(source, os.path.join(staging, name), name == MANIFEST)
            written[name] = (digest, size)
            if name == MANIFEST:
                if digest != manifest_sha256:
                    raise StoreError(
                        f"{MANIFEST} has sha256 {digest}, not the {manifest_sha256} "
                        "verified on the controller: not the bundle that was checked"
                    )
                files = parse_manifest(content, model_id)
                extra = sorted(set(written) - set(files) - {MANIFEST})
                if extra:
                    raise StoreError(f"unexpected file(s) {extra} not listed in the manifest")
    if files is None:
        raise StoreError(f"the archive holds no {model_id}/{MANIFEST}")
    for name, entry in sorted(files.items()):
        if name not in written:
            raise StoreError(f"missing file {name!r} listed in the manifest (incomplete archive)")
        digest, size = written[name]
        if size != entry["size"]:
            raise StoreError(
                f"{name}: {size} bytes but the manifest says {entry['size']} (truncated transfer)"
            )
        if digest != entry["sha256"]:
            raise StoreError(
                f"{name}: sha256 {digest} does not match the manifest's {entry['sha256']} "
                "(corrupted in transfer)"
            )
    return written


class StoreLock:
    """An exclusive flock on the store folder, held while anything in the store changes."""

    def __init__(self, store: str, timeout: int) -> None:
        self.store = store
        self.timeout = timeout
        self.fd = -1

    def __enter__(self) -> StoreLock:
        self.fd = os.open(self.store, os.O_RDONLY | os.O_DIRECTORY)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > deadline:
                os.close(self.fd)
                raise StoreError(
                    f"another run holds the lock of {self.store} for more than {self.timeout} s"
                )
            time.sleep(0.2)

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)


def install(store: str, model_id: str, manifest_sha256: str, src: str, max_bytes: int) -> None:
    """Installs the archive as ``<store>/<model_id>``, replacing a folder of that name."""
    target = os.path.join(store, model_id)
    if not src or not os.path.exists(src):
        raise StoreError(f"the bundle must be installed but src {src!r} does not exist on the node")
    if os.path.isfile(src) and os.path.getsize(src) > max_bytes + MAX_MANIFEST_BYTES + (1 << 20):
        raise StoreError(f"src {src} is larger than max_bytes ({max_bytes} bytes) allows")
    staging = ""
    try:
        staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{model_id}-", dir=store)
        unpack(src, staging, model_id, manifest_sha256, max_bytes)
        os.chmod(staging, DIR_MODE)
        _fsync_dir(staging)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        if staging:
            _remove(staging)
        raise StoreError(f"cannot read the archive {src} (truncated or not a tar): {exc}") from None
    except BaseException:
        if staging:
            _remove(staging)
        raise
    replaced = os.path.lexists(target)
    if replaced:
        aside = os.path.join(store, f"{REPLACED_PREFIX}{model_id}-{secrets.token_hex(4)}")
        os.rename(target, aside)
        os.rename(staging, target)
        _fsync_dir(store)
        _remove(aside)
    else:
        os.rename(staging, target)
    _fsync_dir(store)


@dataclass
class Plan:
    """What a run changes in the store: plain data that a probe or check-mode run reports and a
    real run applies."""

    reason: str = ""  # why the bundle must be installed; "" when the store holds it intact
    replace: bool = False  # a folder of the bundle's name is in the way
    clean: list[str] = field(default_factory=list)  # leftovers of interrupted runs
    prune: list[str] = field(default_factory=list)  # bundles beyond keep, not protected

    @property
    def changes(self) -> bool:
        return bool(self.reason or self.clean or self.prune)


def plan_changes(
    store: str, model_id: str, manifest_sha256: str, keep: int, protect: list[str]
) -> Plan:
    """What a run would change in the store now; reads it and changes nothing."""
    target = os.path.join(store, model_id)
    reason = check_installed(target, model_id, manifest_sha256)
    return Plan(
        reason=reason,
        replace=bool(reason) and os.path.lexists(target),
        clean=leftovers(store),
        prune=prune_plan(list_bundles(store), keep, model_id, protect),
    )


def apply_plan(
    plan: Plan,
    store: str,
    model_id: str,
    manifest_sha256: str,
    src: str,
    max_bytes: int,
    result: dict[str, object],
) -> None:
    """Makes the changes of ``plan``, each recorded in ``result`` once made, so that a failure
    reports what was done before it."""
    result["reason"] = plan.reason
    for name in plan.clean:
        _remove(os.path.join(store, name))
        result["cleaned"].append(name)
        result["changed"] = True
    if plan.reason:
        install(store, model_id, manifest_sha256, src, max_bytes)
        result.update(installed=True, replaced=plan.replace, changed=True)
    for name in plan.prune:
        _remove(os.path.join(store, name))
        result["removed"].append(name)
        result["changed"] = True
    if plan.clean or plan.prune:
        _fsync_dir(store)


def report(plan: Plan, present: bool, installed: bool, changed: bool) -> dict[str, object]:
    """The module's result fields for ``plan``."""
    return {
        "changed": changed,
        "present": present,
        "installed": installed,
        "reason": plan.reason,
        "replaced": plan.replace,
        "removed": list(plan.prune),
        "cleaned": list(plan.clean),
    }


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "store": {"type": "path", "default": DEFAULT_STORE},
            "model_id": {"type": "str", "required": True},
            "manifest_sha256": {"type": "str", "required": True},
            "src": {"type": "path"},
            "keep": {"type": "int", "default": DEFAULT_KEEP},
            "protect": {"type": "list", "elements": "str", "default": []},
            "probe": {"type": "bool", "default": False},
            "max_bytes": {"type": "int", "default": MAX_BUNDLE_BYTES},
            "lock_timeout": {"type": "int", "default": 120},
        },
        supports_check_mode=True,
    )
    params = module.params
    store = params["store"]
    model_id = params["model_id"]
    manifest_sha256 = params["manifest_sha256"].lower()
    keep = params["keep"]
    protect = params["protect"]
    where = {"model_id": model_id, "path": os.path.join(store, model_id)}

    error = option_error(store, keep, protect)
    if not error and not is_model_id(model_id):
        error = f"model_id {model_id!r} is not a safe folder name"
    if not error and not SHA256_PATTERN.match(manifest_sha256):
        error = "manifest_sha256 must be 64 hexadecimal digits"
    if error:
        module.fail_json(msg=error, **where, **report(Plan(), False, False, False))

    planned = plan_changes(store, model_id, manifest_sha256, keep, protect)
    present = not planned.reason
    if params["probe"] or module.check_mode:
        applies = not params["probe"]
        module.exit_json(
            **where,
            **report(planned, present, applies and not present, applies and planned.changes),
        )
    result = {**where, **report(Plan(reason=planned.reason), present, False, False)}
    if planned.reason and not params["src"]:
        msg = f"{model_id} must be installed ({planned.reason}) but no src was given"
        module.fail_json(msg=msg, **result)
    try:
        if not os.path.isdir(store):
            os.makedirs(store, DIR_MODE)
            result["changed"] = True
        with StoreLock(store, params["lock_timeout"]):
            # Planned again under the lock: another run may have changed the store meanwhile.
            locked = plan_changes(store, model_id, manifest_sha256, keep, protect)
            apply_plan(
                locked, store, model_id, manifest_sha256, params["src"], params["max_bytes"], result
            )
    except (StoreError, OSError) as exc:
        module.fail_json(msg=f"{model_id} not installed: {exc}", **result)
    module.exit_json(**result)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
