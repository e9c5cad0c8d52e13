"""What a bundle holds: its format version, its files, and the most each file may weigh.

The caps are the node's, not the bundle's: the manifest's sizes are checked against them before
any file is opened, and an archive member's size before it is extracted.
"""

from __future__ import annotations

from edgecast.store_rules import MANIFEST, MAX_MANIFEST_BYTES

FORMAT_VERSION = 1
ARCHITECTURE = "architecture.json"
WEIGHTS = "weights.npz"
SCALING = "scaling.json"
REFERENCE = "reference.npz"
LITERT = "model.tflite"
REQUIRED_FILES = (ARCHITECTURE, WEIGHTS, SCALING, REFERENCE)
BUNDLE_FILES = (*REQUIRED_FILES, LITERT)
# The most each file may hold. The largest network that edgecast.architecture's ranges allow
# has 31 MB of float32 weights (its LiteRT export as much again); 64 reference cases of a
# year-long window with temperatures take 9 MB. MAX_BUNDLE_BYTES bounds them all together.
MAX_FILE_BYTES = {
    MANIFEST: MAX_MANIFEST_BYTES,
    ARCHITECTURE: 64 << 10,
    SCALING: 64 << 10,
    WEIGHTS: 40 << 20,
    REFERENCE: 12 << 20,
    LITERT: 40 << 20,
}
MAX_REFERENCE_CASES = 64
