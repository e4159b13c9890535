"""`mlops-assets`: command-line tools around the platform.

    mlops-assets simulate --out DIR [--customers N --terminals N --days N --start YYYY-MM-DD
                                     --seed N --format parquet|csv]
                                    [--drift spending_shift|new_fraud_pattern --drift-start YYYY-MM-DD]

writes a simulated data set (transactions, fraud labels, customer and terminal profiles) that
the raw assets can load through their `path` run config. `--drift` changes the world from
`--drift-start` on (see `DRIFTS` in the simulator), to show drift monitoring and retraining.

    mlops-assets broker start|stop|status [--port 9092]

runs the embedded Kafka-protocol broker in the background, its data under
`$MLOPS_DATA_DIR/kafka`, and creates the platform's topics.

    mlops-assets services start|stop|status [--rate 20]

runs the real-time path in the background (logs and pids in `$MLOPS_DATA_DIR/services`):
the ingestion service (:8081), the fraud scoring service (metrics :9101), the transaction
updater (status lookup :8082), SMS alerting (log backend, metrics :9103) and the streaming
gateway, which simulates the days after the default data set and posts them at `--rate`.
"""
import argparse
import datetime
import sys
import time
from pathlib import Path

import httpx

from mlops_assets.arguments import add_simulation_arguments, positive_int, simulation_config
from mlops_assets.resources.kafka import KafkaResource
from mlops_assets.services.local_broker import BrokerError, LocalBroker
from mlops_assets.services.processes import BackgroundProcess
from mlops_assets.services.simulator import SimulationConfig, simulate, write_dataset
from mlops_assets.settings import data_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops-assets", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    simulate_cmd = commands.add_parser("simulate", help="write a simulated data set to files")
    simulate_cmd.add_argument("--out", type=Path, required=True, help="output directory")
    add_simulation_arguments(simulate_cmd)
    simulate_cmd.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    broker_cmd = commands.add_parser("broker", help="run the embedded Kafka-protocol broker")
    broker_cmd.add_argument("action", choices=("start", "stop", "status"))
    broker_cmd.add_argument("--port", type=positive_int, default=9092)
    services_cmd = commands.add_parser("services", help="run the real-time services in the background")
    services_cmd.add_argument("action", choices=("start", "stop", "status"))
    services_cmd.add_argument("--rate", type=float, default=20, help="transactions per second from the gateway")
    return parser


def _simulate(args: argparse.Namespace) -> None:
    config = simulation_config(args)
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


INGESTION_URL = "http://127.0.0.1:8081"


def _platform_services(rate: float) -> list[BackgroundProcess]:
    """The real-time path, in start order (each after what it depends on)."""
    run_dir = data_dir() / "services"
    module = [sys.executable, "-m"]
    live_start = SimulationConfig.start + datetime.timedelta(days=SimulationConfig.days)  # after the batch data
    return [
        BackgroundProcess("ingestion", [*module, "mlops_assets.services.ingestion", "serve", "--port", "8081"], run_dir),
        BackgroundProcess("scoring", [*module, "mlops_assets.services.scoring", "--metrics-port", "9101"], run_dir),
        BackgroundProcess(
            "updater", [*module, "mlops_assets.services.updater", "--store", str(run_dir / "statuses.db"),
                        "--port", "8082"], run_dir,
        ),
        BackgroundProcess(
            "alerting", [*module, "mlops_assets.services.alerting", "--backend", "log",
                         "--sent-log", str(run_dir / "alerts.db"), "--metrics-port", "9103"], run_dir,
        ),
        BackgroundProcess(
            "gateway", [*module, "mlops_assets.services.gateway", "--url", INGESTION_URL, "--rate", str(rate),
                        "--start", live_start.isoformat(), "--days", "30", "--id-prefix", "live-"], run_dir,
        ),
    ]


def _wait_for_ingestion(timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(f"{INGESTION_URL}/health", timeout=1).raise_for_status()
            return
        except httpx.HTTPError as error:
            if time.monotonic() > deadline:
                raise OSError(f"the ingestion service did not answer at {INGESTION_URL}: {error}") from error
            time.sleep(0.2)


def _services(args: argparse.Namespace) -> None:
    services = _platform_services(args.rate)
    if args.action == "start":
        for service in services:
            if service.name == "gateway":
                _wait_for_ingestion()
            print(f"{service.name}: pid {service.start()}, log {service.log_file}")
    elif args.action == "stop":
        for service in reversed(services):
            print(f"{service.name}: {'stopped' if service.stop() else 'was not running'}")
    else:
        for service in services:
            pid = service.running_pid()
            print(f"{service.name}: {f'running (pid {pid})' if pid else 'not running'}, log {service.log_file}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "simulate":
            _simulate(args)
        elif args.command == "broker":
            _broker(args)
        elif args.command == "services":
            _services(args)
    except (OSError, ValueError, BrokerError) as error:
        print(f"mlops-assets {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
