"""The peer kit's handlers behind an import that takes SLOW_IMPORT_S seconds.

Stands in for an application whose import is slow (a framework, a model, a
warm cache): what a reload must not make clients wait for.
"""

import os
import time

time.sleep(float(os.environ.get("SLOW_IMPORT_S", "3")))

from hello import Raw, app  # noqa: E402,F401
