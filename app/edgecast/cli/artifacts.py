"""``edgecast keygen``, ``sign`` and ``pack``: keys and signed, packed bundles."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_keygen(args: argparse.Namespace) -> int:
    from edgecast.signing import generate_keypair

    key = generate_keypair(args.private, args.public)
    print(
        f"key id {key}: private key {args.private} (keep it in the cloud), public key {args.public}"
    )
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    from edgecast.bundle import BundleError, sign_bundle
    from edgecast.signing import SigningError, load_private_key

    try:
        key = sign_bundle(args.bundle, load_private_key(args.key))
    except (BundleError, SigningError) as exc:
        print(f"REFUSED {args.bundle}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.bundle}: signed with key id {key}")
    return 0


def _cmd_pack(args: argparse.Namespace) -> int:
    from edgecast.bundle import BundleError, pack_bundle

    try:
        print(pack_bundle(args.bundle, args.output))
    except BundleError as exc:
        print(f"REFUSED {args.bundle}: {exc}", file=sys.stderr)
        return 1
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Registers this module's subcommands."""
    keygen = sub.add_parser("keygen", help="create an Ed25519 key pair for signing bundles")
    keygen.add_argument("--private", type=Path, required=True)
    keygen.add_argument("--public", type=Path, required=True)
    keygen.set_defaults(func=_cmd_keygen)

    sign = sub.add_parser("sign", help="sign a bundle's manifest with an Ed25519 private key")
    sign.add_argument("bundle", type=Path)
    sign.add_argument("--key", type=Path, required=True, help="private key (PEM)")
    sign.set_defaults(func=_cmd_sign)

    pack = sub.add_parser("pack", help="write a verified bundle directory as a .tar.gz")
    pack.add_argument("bundle", type=Path)
    pack.add_argument("-o", "--output", type=Path, required=True)
    pack.set_defaults(func=_cmd_pack)
