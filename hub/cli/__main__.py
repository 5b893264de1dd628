"""``python -m lienthong.hub.cli``: the ``lienthong`` command without its console script."""

import sys

from . import main

sys.exit(main())
