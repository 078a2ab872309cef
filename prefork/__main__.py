"""``python -m prefork``: the same as the ``prefork`` command."""

import sys

from .command import main

sys.exit(main())
