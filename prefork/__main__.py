"""``python -m prefork``: the same as the ``prefork`` command."""

import sys

from .cli import main

sys.exit(main())
