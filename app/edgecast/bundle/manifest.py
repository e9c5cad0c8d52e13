"""A bundle's manifest: its format, its model_id, the size and sha256 of each file, its signature.

The sizes are checked against the node's caps before any file is opened, so a manifest that
claims gigabytes is refused unread.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgecast.bundle.errors import BundleError
from edgecast.bundle.files import open_file, open_folder, read_files
from edgecast.bundle.json_files import json_object
from edgecast.bundle.layout import BUNDLE_FILES, FORMAT_VERSION, MAX_FILE_BYTES, REQUIRED_FILES
from edgecast.signing import SigningError, verify_manifest
from edgecast.store_rules import MANIFEST, MAX_BUNDLE_BYTES, MAX_MANIFEST_BYTES, is_model_id, shown

SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


def file_table(manifest: dict[str, object], manifest_size: int) -> dict[str, tuple[int, str]]:
    """(size, sha256) of each file the manifest lists, after checking them against the caps."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{MANIFEST} has no 'files' table of sizes and digests")
    unknown = sorted(set(files) - set(BUNDLE_FILES))
    if unknown:
        raise BundleError(
            f"{MANIFEST} lists {shown(unknown)}, not bundle files (a bundle holds "
            f"{', '.join(BUNDLE_FILES)} and its manifest)"
        )
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise BundleError(f"manifest does not list required file(s) {missing}")
    table = {}
    for name, entry in sorted(files.items()):
        size = entry.get("size") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BundleError(
                f"{MANIFEST}: the size of {name} is {shown(size)}, not a whole number of bytes"
            )
        if size > MAX_FILE_BYTES[name]:
            raise BundleError(
                f"{MANIFEST}: {name} of {size} bytes is larger than the {MAX_FILE_BYTES[name]} "
                f"bytes a bundle's {name} may hold"
            )
        if not isinstance(digest, str) or SHA256_PATTERN.fullmatch(digest) is None:
            raise BundleError(
                f"{MANIFEST}: the sha256 of {name} is {shown(digest)}, not 64 hexadecimal digits"
            )
        table[name] = (size, digest)
    total = manifest_size + sum(size for size, _ in table.values())
    if total > MAX_BUNDLE_BYTES:
        raise BundleError(
            f"{MANIFEST}: the bundle's files hold {total} bytes, more than the {MAX_BUNDLE_BYTES} "
            "bytes a bundle may hold"
        )
    return table


def manifest_bytes(folder: int, directory: Path) -> bytes:
    """The manifest file's bytes, never through a link, refused above MAX_MANIFEST_BYTES."""
    missing = f"{directory}: no {MANIFEST} (not a bundle, or an incomplete copy)"
    with open_file(folder, MANIFEST, missing) as handle:
        if os.fstat(handle.fileno()).st_size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
        data = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
    return data


def read_manifest(
    folder: int, directory: Path
) -> tuple[dict[str, object], dict[str, tuple[int, str]]]:
    """The manifest, and the (size, sha256) of each file it lists."""
    data = manifest_bytes(folder, directory)
    manifest = json_object(MANIFEST, data)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"bundle format_version {shown(manifest.get('format_version'))} is not supported "
            f"(this edgecast reads version {FORMAT_VERSION})"
        )
    model_id = manifest.get("model_id")
    if not is_model_id(model_id):
        raise BundleError(f"manifest model_id {shown(model_id)} is missing or not a safe name")
    return manifest, file_table(manifest, len(data))


def check_signature(manifest: dict[str, object], public_key: Ed25519PublicKey | None) -> None:
    signature = manifest.get("signature")
    if public_key is None:
        if signature is not None:
            key = str(signature.get("key_id"))[:64] if isinstance(signature, dict) else None
            raise BundleError(
                f"bundle is signed (key id {key}) but no public key is configured to verify it; "
                "configure the signer's public key"
            )
        return
    if signature is None:
        raise BundleError("bundle is unsigned but a public key is configured: signature required")
    try:
        verify_manifest(manifest, public_key)
    except SigningError as exc:
        raise BundleError(f"bad signature: {exc}") from None


def checked_manifest(directory: Path) -> dict[str, object]:
    """The manifest of a bundle folder whose every file matches it."""
    with open_folder(directory) as folder:
        manifest, table = read_manifest(folder, directory)
        read_files(folder, table)
    return manifest
