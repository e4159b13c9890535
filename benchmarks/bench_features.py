"""Time the offline feature store: every feature group, the label group and the feature view.

Usage: python benchmarks/bench_features.py [--millions 1 4]

For each size it simulates a data set (in a separate process, so its memory does not count),
loads it into a fresh DuckDB warehouse file through the data-contract loader, then builds
each table with the same compiled SQL the Dagster assets run. Prints seconds and rows per
second per table, and the peak memory of the process that built them.
"""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlops_assets.contracts import CONTRACTS  # noqa: E402
from mlops_assets.features.catalog import load_catalog  # noqa: E402
from mlops_assets.features.offline import (  # noqa: E402
    feature_group_sql,
    feature_view_sql,
    label_group_sql,
)
from mlops_assets.ingestion import load_file  # noqa: E402
from mlops_assets.resources.warehouse import WarehouseResource  # noqa: E402
from mlops_assets.settings import feature_definitions_dir  # noqa: E402

# About 1,000,000 simulated transactions per 10,000 customers over 58 days.
CUSTOMERS_PER_MILLION, TERMINALS_PER_MILLION, DAYS = 10_000, 5_000, 58


def simulate_files(millions: float, out: Path) -> None:
    subprocess.run(
        [
            sys.executable, "-m", "mlops_assets.cli", "simulate", "--out", str(out),
            "--customers", str(int(CUSTOMERS_PER_MILLION * millions)),
            "--terminals", str(int(TERMINALS_PER_MILLION * millions)),
            "--days", str(DAYS),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def build_all(data: Path, warehouse_path: Path) -> dict:
    """Runs in a fresh process: load, then build every table, timing each."""
    catalog = load_catalog(feature_definitions_dir())
    timings = {}
    with WarehouseResource(database=str(warehouse_path)).connect() as con:
        started = time.perf_counter()
        for name, contract in CONTRACTS.items():
            load_file(con, contract, str(data / f"{name}.parquet"), run_id="bench")
        timings["load raw inputs"] = time.perf_counter() - started
        rows = con.execute("SELECT count(*) FROM raw.transactions").fetchone()[0]
        tables = [(group.table, feature_group_sql(group)) for group in catalog.groups]
        tables += [(labels.table, label_group_sql(labels)) for labels in catalog.label_groups]
        tables += [(view.table, feature_view_sql(view)) for view in catalog.views]
        for table, sql in tables:
            started = time.perf_counter()
            con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql}")
            timings[table] = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": rows, "timings": timings, "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--millions", type=float, nargs="+", default=[1, 4])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(build_all(Path(args.child[0]), Path(args.child[1]))))
        return
    for millions in args.millions:
        with tempfile.TemporaryDirectory() as scratch:
            data = Path(scratch) / "data"
            simulate_files(millions, data)
            output = subprocess.run(
                [sys.executable, __file__, "--child", str(data), str(Path(scratch) / "warehouse.duckdb")],
                check=True, capture_output=True, text=True,
            ).stdout
        result = json.loads(output.strip().splitlines()[-1])
        rows = result["rows"]
        features_seconds = sum(s for table, s in result["timings"].items() if table != "load raw inputs")
        print(f"\n{rows:,} transactions")
        for table, seconds in result["timings"].items():
            print(f"  {table:32s} {seconds:7.2f} s  {rows / seconds:12,.0f} rows/s")
        print(f"  {'all feature tables':32s} {features_seconds:7.2f} s  {rows / features_seconds:12,.0f} rows/s")
        print(f"  peak memory of the building process: {result['peak_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
