"""Time the payment-gateway simulator on about a million transactions.

Usage: python benchmarks/bench_simulator.py [--transactions-target N]

A short calibration run measures how many transactions a customer makes per
day; the benchmark then picks customers and days to land near the target.
"""

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlops_assets.services.simulator import SimulationConfig, simulate  # noqa: E402

FULL_CUSTOMERS = 10_000
MIN_DAYS = 7


def transactions_per_customer_day() -> float:
    calibration = SimulationConfig(customers=2000, terminals=1000, days=14, seed=0)
    dataset = simulate(calibration)
    return len(dataset.transactions) / (calibration.customers * calibration.days)


def config_for(target: int, per_customer_day: float) -> SimulationConfig:
    """10,000 customers over as many days as needed; fewer customers for small targets."""
    days = round(target / (FULL_CUSTOMERS * per_customer_day))
    if days >= MIN_DAYS:
        customers = FULL_CUSTOMERS
    else:
        days = MIN_DAYS
        customers = max(1, round(target / (MIN_DAYS * per_customer_day)))
    return SimulationConfig(customers=customers, terminals=max(1, customers // 2), days=days, seed=42)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions-target", type=int, default=1_000_000)
    args = parser.parse_args()

    per_customer_day = transactions_per_customer_day()
    config = config_for(args.transactions_target, per_customer_day)
    print(f"config: customers={config.customers} terminals={config.terminals} days={config.days}")

    began = time.perf_counter()
    dataset = simulate(config)
    seconds = time.perf_counter() - began

    transactions = len(dataset.transactions)
    fraud_rate = len(dataset.fraud_truth) / transactions
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"transactions: {transactions}")
    print(f"seconds: {seconds:.2f}")
    print(f"transactions/second: {transactions / seconds:.0f}")
    print(f"fraud rate: {100 * fraud_rate:.3f} %")
    print(f"labels: {len(dataset.fraud_labels)}")
    print(f"peak memory: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
