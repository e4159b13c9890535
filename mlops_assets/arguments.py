"""Arguments shared by the command-line entry points: a bad value exits non-zero with a
message that says what is expected."""
import argparse
import datetime

from mlops_assets.services.simulator import DRIFTS, SimulationConfig


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {value}")
    return value


def iso_date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-01") from error


def add_simulation_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's options: size, period, seed and drift."""
    parser.add_argument("--customers", type=positive_int, default=SimulationConfig.customers)
    parser.add_argument("--terminals", type=positive_int, default=SimulationConfig.terminals)
    parser.add_argument("--days", type=positive_int, default=SimulationConfig.days)
    parser.add_argument(
        "--start", type=iso_date, default=SimulationConfig.start,
        help="first simulated day, YYYY-MM-DD (the same seed keeps the same customers and terminals)",
    )
    parser.add_argument("--seed", type=int, default=SimulationConfig.seed)
    parser.add_argument("--drift", choices=DRIFTS, help="how the world changes from --drift-start on")
    parser.add_argument("--drift-start", type=iso_date, help="first day of the changed world, YYYY-MM-DD")


def simulation_config(args: argparse.Namespace) -> SimulationConfig:
    """The configuration the simulator options describe (ValueError if inconsistent)."""
    return SimulationConfig(
        customers=args.customers,
        terminals=args.terminals,
        days=args.days,
        start=args.start,
        seed=args.seed,
        drift=args.drift,
        drift_start=args.drift_start,
    )
