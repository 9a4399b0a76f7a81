"""``python -m iozen_etl``: the ``iozen-etl`` command line, for when the script is not on PATH."""

import sys

from iozen_etl.cli import main

sys.exit(main())
