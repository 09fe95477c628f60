"""``python -m edgekit`` = the ``edgekit`` command."""

import sys

from edgekit.cli import main

sys.exit(main())
