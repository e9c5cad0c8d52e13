"""The model bundle: the unit that travels from the cloud to the edge, and its verification.

A bundle is a directory named by its model_id (or a tar of it) holding ``manifest.json`` and
the files it lists with their size and sha256. Nothing in a bundle is used before every digest
matches and, where a public key is configured, the signature verifies. Verification here needs
no ML framework; the runtimes add the parity check on top.

A bundle speaks for its content, never for the node's limits. What it may weigh (``layout`` and
``edgecast.store_rules``), which networks a node builds (``edgecast.architecture``) and how
loose a parity tolerance it may ask for (:class:`ParityLimit`) are the node's, and each is
checked before the bytes it bounds are read: the manifest's sizes before any file is opened
(``manifest``), a file's size on disk before it is read (``files``), an array's shape in an
``.npz`` before its data is decompressed (``npz``), an archive member's size before it is
extracted (``archive``). Files are opened without following links, and every refusal is a
:class:`BundleError` whose message says what is wrong. ``load`` puts the checks together;
``write`` makes and signs bundles.
"""

from edgecast.bundle.archive import pack_bundle, unpacked
from edgecast.bundle.contents import Bundle, Reference
from edgecast.bundle.errors import BundleError
from edgecast.bundle.load import load_bundle, load_bundle_dir
from edgecast.bundle.parity import DEFAULT_PARITY_LIMIT, ParityLimit, ParityTolerance
from edgecast.bundle.write import sign_bundle, write_bundle

__all__ = [
    "DEFAULT_PARITY_LIMIT",
    "Bundle",
    "BundleError",
    "ParityLimit",
    "ParityTolerance",
    "Reference",
    "load_bundle",
    "load_bundle_dir",
    "pack_bundle",
    "sign_bundle",
    "unpacked",
    "write_bundle",
]
