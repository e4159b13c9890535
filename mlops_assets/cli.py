"""`mlops-assets`: command-line tools around the platform.

    mlops-assets simulate --out DIR [--customers N --terminals N --days N --start YYYY-MM-DD
                                     --seed N --format parquet|csv]

writes a simulated data set (transactions, fraud labels, customer and terminal profiles) that
the raw assets can load through their `path` run config.

    mlops-assets broker start|stop|status [--port 9092]

runs the embedded Kafka-protocol broker in the background, its data under
`$MLOPS_DATA_DIR/kafka`, and creates the platform's topics.
"""
import argparse
import datetime
import sys
import time
from pathlib import Path

from mlops_assets.resources.kafka import KafkaResource
from mlops_assets.services.local_broker import BrokerError, LocalBroker
from mlops_assets.services.simulator import SimulationConfig, simulate, write_dataset
from mlops_assets.settings import data_dir


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-01") from error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops-assets", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    simulate_cmd = commands.add_parser("simulate", help="write a simulated data set to files")
    simulate_cmd.add_argument("--out", type=Path, required=True, help="output directory")
    simulate_cmd.add_argument("--customers", type=_positive, default=SimulationConfig.customers)
    simulate_cmd.add_argument("--terminals", type=_positive, default=SimulationConfig.terminals)
    simulate_cmd.add_argument("--days", type=_positive, default=SimulationConfig.days)
    simulate_cmd.add_argument("--start", type=_date, default=SimulationConfig.start, help="first day, YYYY-MM-DD")
    simulate_cmd.add_argument("--seed", type=int, default=SimulationConfig.seed)
    simulate_cmd.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    broker_cmd = commands.add_parser("broker", help="run the embedded Kafka-protocol broker")
    broker_cmd.add_argument("action", choices=("start", "stop", "status"))
    broker_cmd.add_argument("--port", type=_positive, default=9092)
    return parser


def _simulate(args: argparse.Namespace) -> None:
    config = SimulationConfig(
        customers=args.customers,
        terminals=args.terminals,
        days=args.days,
        start=args.start,
        seed=args.seed,
    )
    started = time.perf_counter()
    dataset = simulate(config, progress=lambda line: print(line, file=sys.stderr, flush=True))
    files = write_dataset(dataset, args.out, args.format)
    seconds = time.perf_counter() - started
    print(
        f"{len(dataset.transactions):,} transactions in {seconds:.1f} s "
        f"({len(dataset.transactions) / seconds:,.0f}/s)",
        file=sys.stderr,
    )
    for name, path in files.items():
        print(f"{name}: {path}")


def _broker(args: argparse.Namespace) -> None:
    broker = LocalBroker(data_dir() / "kafka", port=args.port)
    if args.action == "start":
        broker.start()
        created = KafkaResource(bootstrap_servers=broker.bootstrap_servers).ensure_topics()
        print(f"broker on {broker.bootstrap_servers} (pid {broker.running_pid()}); topics created: {created or 'none'}")
    elif args.action == "stop":
        print("broker stopped" if broker.stop() else "broker was not running")
    else:
        pid = broker.running_pid()
        print(f"broker on {broker.bootstrap_servers} (pid {pid})" if pid else "broker is not running")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "simulate":
            _simulate(args)
        elif args.command == "broker":
            _broker(args)
    except (OSError, ValueError, BrokerError) as error:
        print(f"mlops-assets {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
