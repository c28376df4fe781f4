"""``python -m bmdkit.cli``: the ``bmdkit`` command."""

import sys

from bmdkit.cli import main

sys.exit(main())
