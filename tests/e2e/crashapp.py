"""A handler module that imports in the `prefork serve` pre-check but raises in
every worker (whose process title names it), as a module that needs something
only the service's environment lacks would."""

import setproctitle

if setproctitle.getproctitle().startswith("prefork: worker"):
    raise RuntimeError("this module only breaks in workers")

from faultapp import Handler  # noqa: E402,F401
