"""Fraud scores in the warehouse: the champion model applied in batch to a window of the
feature view, or the scoring service's scores loaded from an exact range of `fraud_scores`."""
import time

import numpy as np
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    Failure,
    MaterializeResult,
    asset,
)
from pydantic import Field

from mlops_assets.assets.kafka_input import KafkaOffsetRange, read_kafka_offsets
from mlops_assets.assets.materialization import warehouse_materialization
from mlops_assets.assets.training import load_champion
from mlops_assets.contracts import FRAUD_SCORES
from mlops_assets.features.catalog import FeatureView
from mlops_assets.ingestion import ensure_tables, load_messages
from mlops_assets.resources.kafka import KafkaResource
from mlops_assets.resources.mlflow import ModelRegistryResource
from mlops_assets.resources.warehouse import WarehouseResource

FRAUD_SCORES_TABLE = FRAUD_SCORES.table


class FraudScoresConfig(Config):
    """Which transactions to score and how scores become decisions."""

    start: str | None = Field(
        default=None, description="First day to score, YYYY-MM-DD. Empty: `days` days before the last transaction."
    )
    end: str | None = Field(default=None, description="Day after the last one to score (exclusive). Empty: up to the end.")
    days: int = Field(default=7, description="How many days to score when `start` is empty.")
    review_threshold: float = Field(default=0.5, description="Scores at or above this are sent for review.")
    decline_threshold: float = Field(default=0.9, description="Scores at or above this are declined.")
    kafka_offsets: list[KafkaOffsetRange] | None = Field(
        default=None,
        description="Instead of scoring: load the scoring service's scores in these exact ranges of the "
        "fraud_scores topic (set by the topic's sensor).",
    )


def decisions(scores: np.ndarray, review_threshold: float, decline_threshold: float) -> np.ndarray:
    return np.select(
        [scores >= decline_threshold, scores >= review_threshold], ["decline", "review"], default="approve"
    )


def build_fraud_scores_asset(view: FeatureView) -> AssetsDefinition:
    @asset(
        name="fraud_scores",
        description="Fraud score and decision per transaction and model version: batch scores of the champion, "
        "and the scoring service's scores from Kafka.",
        deps=["champion_model", view.name],
        group_name="scoring",
        kinds={"duckdb"},
        pool="warehouse",
    )
    def fraud_scores(
        context: AssetExecutionContext,
        config: FraudScoresConfig,
        warehouse: WarehouseResource,
        model_registry: ModelRegistryResource,
        kafka: KafkaResource,
    ) -> MaterializeResult:
        if config.kafka_offsets:
            return _load_streamed_scores(context, config, warehouse, kafka, view)
        if not 0 <= config.review_threshold <= config.decline_threshold <= 1:
            raise Failure(description="thresholds must satisfy 0 <= review_threshold <= decline_threshold <= 1")
        model = load_champion(model_registry.registry(), view)

        with warehouse.connect() as con:
            started = time.perf_counter()
            rows = con.execute(
                f"SELECT transaction_id, {', '.join(view.feature_names)} FROM {view.table} "
                "WHERE event_time >= coalesce($start::TIMESTAMP, "
                f"  (SELECT max(event_time)::DATE - INTERVAL ($days) DAY + INTERVAL 1 DAY FROM {view.table})) "
                "AND ($end IS NULL OR event_time < $end::TIMESTAMP)",
                {"start": config.start, "end": config.end, "days": config.days},
            ).df()
            if rows.empty:
                raise Failure(description="no transactions in the window to score: check start/end")
            scores = model.model.predict_proba(rows[list(view.feature_names)])[:, 1]
            latency_ms = (time.perf_counter() - started) * 1000 / len(rows)
            rows = rows[["transaction_id"]].assign(
                score=scores,
                decision=decisions(scores, config.review_threshold, config.decline_threshold),
                model_name=model.name,
                model_version=model.version,
                feature_view_version=model.feature_view_version,
                latency_ms=latency_ms,
            )
            ensure_tables(con, FRAUD_SCORES)
            con.register("new_scores", rows)
            # Idempotent per transaction and model version: a re-run replaces, never duplicates.
            con.execute("BEGIN TRANSACTION")
            con.execute(
                f"DELETE FROM {FRAUD_SCORES_TABLE} WHERE model_version = ? "
                "AND transaction_id IN (SELECT transaction_id FROM new_scores)",
                [model.version],
            )
            con.execute(
                f"INSERT INTO {FRAUD_SCORES_TABLE} SELECT transaction_id, score, decision, model_name, "
                "model_version, feature_view_version, now(), latency_ms, now(), ? FROM new_scores",
                [context.run.run_id],
            )
            con.execute("COMMIT")
            counts = rows["decision"].value_counts().to_dict()
            context.log.info(f"scored {len(rows):,} transactions with {model.name} v{model.version}: {counts}")
            return _scores_materialization(
                context,
                con,
                view,
                {
                    "scored_transactions": len(rows),
                    "model_version": model.version,
                    "decisions": str(counts),
                    "mean_latency_ms_per_transaction": round(latency_ms, 4),
                },
            )

    return fraud_scores


def _load_streamed_scores(
    context: AssetExecutionContext,
    config: FraudScoresConfig,
    warehouse: WarehouseResource,
    kafka: KafkaResource,
    view: FeatureView,
) -> MaterializeResult:
    source, messages = read_kafka_offsets(context, kafka, FRAUD_SCORES.topic, config.kafka_offsets)
    with warehouse.connect() as con:
        report = load_messages(con, FRAUD_SCORES, messages, source, context.run.run_id)
        context.log.info(report.summary())
        return _scores_materialization(context, con, view, report.as_metadata())


def _scores_materialization(
    context: AssetExecutionContext, con, view: FeatureView, metadata: dict
) -> MaterializeResult:
    """The scores table's lineage and metadata, whichever way its rows came."""
    return warehouse_materialization(
        context, con, FRAUD_SCORES_TABLE, upstream=[view.name], time_column="scored_at", extra_metadata=metadata
    )
