"""Where things are: the checkout, its shipped data, and the tools of this interpreter's venv."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "data" / "cambridge-estates"
# ansible-playbook, molecule and edgecast live next to the interpreter running the tests.
BIN = Path(sys.executable).parent
# This machine's CA bundle, given to image builds and hosts behind a TLS-intercepting proxy.
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
