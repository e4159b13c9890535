"""Raw inputs: transactions, fraud labels and the customer and terminal profiles.

Each is loaded under its data contract from the payment-gateway simulator (the default),
from Parquet/CSV files named in run config, or (transactions and labels) from an exact offset
range of its Kafka topic, as the topic's sensor requests. Loading appends new ids only; rows
that break the contract land in `raw.rejected_rows` with the reason.
"""
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, asset
from pydantic import Field

from mlops_assets.assets.kafka_input import KafkaOffsetRange, read_kafka_offsets
from mlops_assets.assets.materialization import warehouse_materialization
from mlops_assets.contracts import CONTRACTS, TRANSACTIONS, Contract
from mlops_assets.ingestion import InputFileError, load_file, load_messages
from mlops_assets.quality import (
    daily_coverage_check,
    not_null_check,
    unique_key_check,
    value_range_check,
    warehouse_check,
)
from mlops_assets.resources.kafka import KafkaResource
from mlops_assets.resources.simulator import SimulatorResource
from mlops_assets.resources.warehouse import WarehouseResource


class RawInputConfig(Config):
    """Where to load this input from: a file, a Kafka offset range, or (neither) the simulator."""

    path: str | None = Field(
        default=None,
        description=(
            "A Parquet or CSV file, or a glob of them, to load. "
            "Leave empty (and kafka_offsets too) to load the payment-gateway simulator's data set."
        ),
    )
    kafka_offsets: list[KafkaOffsetRange] | None = Field(
        default=None,
        description="Exact offset ranges of the input's Kafka topic to load (set by the topic's sensor).",
    )


def _read_source(
    context: AssetExecutionContext,
    config: RawInputConfig,
    contract: Contract,
    simulator: SimulatorResource,
    kafka: KafkaResource,
) -> tuple[str, list[bytes] | None]:
    """Where this run's rows come from: (range name, messages) for Kafka, read before the
    warehouse is opened so the write lock is held briefly; (path, None) for a file."""
    if config.path and config.kafka_offsets:
        raise Failure(description="set either path or kafka_offsets, not both", allow_retries=False)
    if not config.kafka_offsets:
        return config.path or str(simulator.dataset_files(context.log.info)[contract.name]), None
    if contract.topic is None:
        raise Failure(description=f"{contract.name} does not stream on Kafka: load it from a file")
    return read_kafka_offsets(context, kafka, contract.topic, config.kafka_offsets)


def build_raw_asset(contract: Contract):
    @asset(
        name=contract.asset_name,
        description=contract.description,
        group_name="raw",
        kinds={"duckdb"},
        pool="warehouse",
    )
    def _raw_input(
        context: AssetExecutionContext,
        config: RawInputConfig,
        warehouse: WarehouseResource,
        simulator: SimulatorResource,
        kafka: KafkaResource,
    ) -> MaterializeResult:
        source, messages = _read_source(context, config, contract, simulator, kafka)
        context.log.info(f"loading {contract.name} from {source}")
        with warehouse.connect() as con:
            try:
                if messages is None:
                    report = load_file(con, contract, source, context.run.run_id)
                else:
                    report = load_messages(con, contract, messages, source, context.run.run_id)
            except InputFileError as error:
                raise Failure(description=str(error), allow_retries=False) from error
            context.log.info(report.summary())
            if report.rows_rejected:
                context.log.warning(f"rejected rows by reason: {report.rejection_reasons}")
            return warehouse_materialization(
                context,
                con,
                contract.table,
                upstream=[],
                time_column=contract.time_column,
                extra_metadata=report.as_metadata(),
            )

    return _raw_input


def build_raw_checks(contract: Contract) -> list:
    checks = [
        warehouse_check(
            contract.asset_name,
            "unique_ids",
            f"Each {', '.join(contract.keys)} is stored once.",
            lambda con: unique_key_check(con, contract.table, ", ".join(contract.keys)),
        ),
        warehouse_check(
            contract.asset_name,
            "no_null_keys",
            "Required fields are never null.",
            lambda con: not_null_check(con, contract.table, [f.name for f in contract.required_fields]),
        ),
    ]
    if contract is TRANSACTIONS:
        checks += [
            warehouse_check(
                contract.asset_name,
                "amounts_in_range",
                "Amounts are numbers >= 0.",
                lambda con: value_range_check(con, contract.table, {"amount": (0, None)}),
            ),
            warehouse_check(
                contract.asset_name,
                "daily_coverage",
                "Every day between the first and the last transaction has transactions.",
                lambda con: daily_coverage_check(con, contract.table, "event_time"),
            ),
        ]
    return checks


raw_assets = [build_raw_asset(contract) for contract in CONTRACTS.values()]
raw_asset_checks = [check for contract in CONTRACTS.values() for check in build_raw_checks(contract)]
