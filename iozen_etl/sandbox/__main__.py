"""``python -m iozen_etl.sandbox``: the ``iozen-etl sandbox`` command on its own."""

from __future__ import annotations

import argparse
import sys

from iozen_etl.sandbox import command


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m iozen_etl.sandbox", description=__doc__)
    command.configure(parser)
    return command.run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
