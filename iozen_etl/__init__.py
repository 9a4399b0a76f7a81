"""iozen-etl: an ioZen workspace in Parquet and DuckDB, and CSV rows replayed as submissions."""

__version__ = "0.1.0"
