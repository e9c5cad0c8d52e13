"""``python -m edgecast.cli``."""

import sys

from edgecast.cli import main

sys.exit(main())
