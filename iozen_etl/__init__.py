"""iozen-etl: an ioZen workspace in Parquet and DuckDB, and CSV rows replayed as submissions."""

import os

# Arrow's bundled allocator (mimalloc) keeps per-thread heaps that the sync's threads fill with
# page tables and do not hand back; the system allocator returns them, which lowers a sync's
# peak memory and its page faults (docs/figures.md). Arrow reads this once, when it loads, so
# it is set before any of the package imports pyarrow; a value already in the environment wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

__version__ = "0.1.0"
