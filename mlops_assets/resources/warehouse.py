"""The warehouse: one DuckDB file, one schema per layer (raw, features, labels, views, training,
scores) and `meta` for lineage."""
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster_duckdb import DuckDBResource

LAYER_SCHEMAS = ("raw", "features", "labels", "views", "training", "scores", "meta")


class WarehouseResource(DuckDBResource):
    """The DuckDB warehouse file. Only Dagster runs write it (one writer per file)."""

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with every layer schema present and times in UTC."""
        if self.database != ":memory:" and ":" not in self.database.split("/")[0]:
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)  # a local file
        with self.get_connection() as con:
            try:
                con.execute("SET TimeZone = 'UTC'")
                for schema in LAYER_SCHEMAS:
                    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                yield con
            finally:
                con.close()  # also on error: the library closes only on success
