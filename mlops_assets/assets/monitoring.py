"""Monitoring of the champion model: feature drift, prediction drift and performance drift,
each an asset whose check says whether the champion still fits the data.

Time here is the data's clock, the latest transaction in the feature view, not the wall
clock: a replayed or simulated history is monitored as it would have been live. Each check's
thresholds are in its asset's run config; a failed check is what the retraining sensor
(`mlops_assets/sensors/monitoring_sensors.py`) acts on.
"""
import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field
from sklearn.metrics import average_precision_score

from mlops_assets.assets.scoring import FRAUD_SCORES_TABLE
from mlops_assets.assets.training import load_champion
from mlops_assets.features.catalog import FeatureView
from mlops_assets.models.registry import VerifiedModel
from mlops_assets.monitoring import DriftResult, measure_drift
from mlops_assets.resources.mlflow import ModelRegistryResource
from mlops_assets.resources.warehouse import WarehouseResource
from mlops_assets.settings import data_dir

NO_FEATURE_DRIFT = "no_feature_drift"
NO_PREDICTION_DRIFT = "no_prediction_drift"
NO_PERFORMANCE_DROP = "no_performance_drop"
MONITORING_CHECKS = {
    "feature_drift_report": NO_FEATURE_DRIFT,
    "prediction_drift_report": NO_PREDICTION_DRIFT,
    "champion_performance": NO_PERFORMANCE_DROP,
}


class FeatureDriftConfig(Config):
    """The recent window compared with the champion's training data, and the check's threshold."""

    current_days: int = Field(default=7, description="Most recent days of the feature view that make the current data.")
    drift_share: float = Field(
        default=0.5,
        description="The check fails when at least this share of the features drifted (Evidently's drift_share).",
    )
    sample_rows: int = Field(
        default=20_000, description="Rows sampled at most from each side (Evidently's time grows with them)."
    )


class PredictionDriftConfig(Config):
    """The recent scores compared with the champion's scores on its test window."""

    current_days: int = Field(default=7, description="Scores of the transactions of this many most recent days.")
    sample_rows: int = Field(default=20_000, description="Scores sampled at most from each side.")


class PerformanceConfig(Config):
    """The champion's average precision on the latest window with known labels, and the check's threshold."""

    window_days: int = Field(default=14, description="Length of the evaluated window in days.")
    label_delay_days: int = Field(
        default=7,
        description="The window ends this many days before the latest transaction, so part of its fraud is "
        "reported; the champion's reference is measured with the same delay on its test window.",
    )
    max_drop: float = Field(
        default=0.1, description="The check fails when average precision falls by more than this below the reference."
    )


def _measure(
    context: AssetExecutionContext, current: pd.DataFrame, reference: pd.DataFrame, columns: list[str], share: float
) -> tuple[DriftResult, Path]:
    """Drift of `current` against `reference`, its HTML report saved under the run's id."""
    path = data_dir() / "reports" / context.asset_key.to_user_string() / f"{context.run.run_id}.html"
    try:
        return measure_drift(current, reference, columns, share, path), path
    except ValueError as error:
        raise Failure(description=f"{error}: check the feature view and the champion's windows") from error


def _drift_metadata(result: DriftResult, path: Path) -> dict:
    return {
        "share_of_drifted_columns": result.share_drifted,
        "drifted_columns": ", ".join(result.drifted_columns) or "none",
        "drift_share_threshold": result.drift_share,
        "column_drift": MetadataValue.json(result.scores()),
        "report_path": MetadataValue.path(str(path)),
        "report_url": MetadataValue.url(path.as_uri()),
    }


def _sample(con, sql: str, parameters: dict, rows: int) -> pd.DataFrame:
    """At most `rows` rows of a query, sampled reproducibly."""
    sampled = f"SELECT * FROM ({sql}) USING SAMPLE reservoir({int(rows)} ROWS) REPEATABLE (42)"
    return con.execute(sampled, parameters).df()


def _in_window(columns: str, table: str) -> str:
    """A query of `columns` for the rows of `table` with event times in `[$start, $end)`."""
    return f"SELECT {columns} FROM {table} WHERE event_time >= $start::TIMESTAMP AND event_time < $end::TIMESTAMP"


def _sample_features_after(con, view: FeatureView, start: dt.datetime, rows: int) -> pd.DataFrame:
    """At most `rows` feature rows of the view's transactions after `start`."""
    sql = f"SELECT {', '.join(view.feature_names)} FROM {view.table} WHERE event_time > $start"
    return _sample(con, sql, {"start": start}, rows)


def _data_clock(con, view: FeatureView) -> dt.datetime:
    """Now, as the data knows it: the latest transaction in the feature view."""
    now = con.execute(f"SELECT max(event_time) FROM {view.table}").fetchone()[0]
    if now is None:
        raise Failure(description=f"{view.table} is empty: materialize {view.name} first")
    return now


def _latest_days(con, view: FeatureView, days: int) -> tuple[dt.datetime, dt.datetime]:
    """The start and end of the feature view's latest `days` days."""
    now = _data_clock(con, view)
    return now - dt.timedelta(days=days), now


def build_feature_drift_asset(view: FeatureView) -> AssetsDefinition:
    @asset(
        name="feature_drift_report",
        description="Evidently data drift of the feature view's latest days against the champion's training data.",
        deps=[view.name, "champion_model"],
        group_name="monitoring",
        kinds={"evidently"},
        pool="warehouse",
        check_specs=[
            AssetCheckSpec(
                NO_FEATURE_DRIFT,
                asset="feature_drift_report",
                description="Fewer features drifted than the configured share.",
            )
        ],
    )
    def feature_drift_report(
        context: AssetExecutionContext,
        config: FeatureDriftConfig,
        warehouse: WarehouseResource,
        model_registry: ModelRegistryResource,
    ) -> MaterializeResult:
        model = load_champion(model_registry.registry(), view)
        tags = model.tags  # its training and test windows among them
        features = ", ".join(view.feature_names)
        with warehouse.connect() as con:
            current_start, now = _latest_days(con, view, config.current_days)
            current = _sample_features_after(con, view, current_start, config.sample_rows)
            reference = _sample(
                con,
                _in_window(features, view.table),
                {"start": tags["train_start"], "end": tags["train_end"]},
                config.sample_rows,
            )
        context.log.info(
            f"comparing {len(current):,} rows after {current_start} with {len(reference):,} rows of champion "
            f"v{model.version}'s training window {tags['train_start']}..{tags['train_end']}"
        )
        result, path = _measure(context, current, reference, list(view.feature_names), config.drift_share)
        metadata = {
            **_drift_metadata(result, path),
            "champion_version": model.version,
            "reference_window": f"{tags['train_start']}..{tags['train_end']}",
            "current_window": f"{current_start}..{now}",
            "reference_rows": len(reference),
            "current_rows": len(current),
        }
        context.log.info(
            f"{len(result.drifted_columns)} of {len(result.columns)} features drifted: {metadata['drifted_columns']}"
        )
        return MaterializeResult(
            metadata=metadata,
            check_results=[
                AssetCheckResult(
                    check_name=NO_FEATURE_DRIFT,
                    passed=not result.drifted,
                    metadata={
                        "share_of_drifted_columns": result.share_drifted,
                        "threshold": config.drift_share,
                        "drifted_columns": metadata["drifted_columns"],
                        "champion_version": model.version,
                    },
                )
            ],
        )

    return feature_drift_report


def build_prediction_drift_asset(view: FeatureView) -> AssetsDefinition:
    @asset(
        name="prediction_drift_report",
        description="Evidently drift of the champion's recent fraud scores against its scores on its test window.",
        deps=["fraud_scores", "champion_model", view.name],
        group_name="monitoring",
        kinds={"evidently"},
        pool="warehouse",
        check_specs=[
            AssetCheckSpec(
                NO_PREDICTION_DRIFT,
                asset="prediction_drift_report",
                description="The score distribution has not drifted.",
            )
        ],
    )
    def prediction_drift_report(
        context: AssetExecutionContext,
        config: PredictionDriftConfig,
        warehouse: WarehouseResource,
        model_registry: ModelRegistryResource,
    ) -> MaterializeResult:
        model = load_champion(model_registry.registry(), view)
        tags = model.tags  # its training and test windows among them
        features = ", ".join(view.feature_names)
        with warehouse.connect() as con:
            current_start, now = _latest_days(con, view, config.current_days)
            current, source = _stored_scores(con, view, model.version, current_start, config.sample_rows), "stored"
            if current.empty:
                # No score by this champion yet (it was just promoted, or nothing was scored):
                # its scores of the same transactions, computed here and not stored.
                latest = _sample_features_after(con, view, current_start, config.sample_rows)
                current, source = pd.DataFrame({"score": _scores(model, latest)}), "computed from the feature view"
            test_rows = _sample(
                con,
                _in_window(features, view.table),
                {"start": tags["test_start"], "end": tags["test_end"]},
                config.sample_rows,
            )
        reference = pd.DataFrame({"score": _scores(model, test_rows)})
        result, path = _measure(context, current, reference, ["score"], 1.0)
        drift = result.columns["score"]
        context.log.info(f"score drift {drift.score:.4f} ({drift.method}, threshold {drift.threshold})")
        return MaterializeResult(
            metadata={
                **_drift_metadata(result, path),
                "score_drift": drift.score,
                "current_mean_score": float(current["score"].mean()),
                "reference_mean_score": float(reference["score"].mean()),
                "current_scores": source,
                "champion_version": model.version,
                "reference_window": f"{tags['test_start']}..{tags['test_end']}",
                "current_window": f"{current_start}..{now}",
            },
            check_results=[
                AssetCheckResult(
                    check_name=NO_PREDICTION_DRIFT,
                    passed=not drift.drifted,
                    metadata={"score_drift": drift.score, "method": drift.method, "threshold": drift.threshold},
                )
            ],
        )

    return prediction_drift_report


def _scores(model: VerifiedModel, rows: pd.DataFrame):
    return model.model.predict_proba(rows[list(model.feature_names)])[:, 1]


def _stored_scores(con, view: FeatureView, version: str, start: dt.datetime, rows: int) -> pd.DataFrame:
    """The stored scores of `version` (batch, or the scoring service's through the
    fraud_scores sensor) of the view's transactions after `start`; none if nothing is stored."""
    try:
        return _sample(
            con,
            f"SELECT s.score FROM {FRAUD_SCORES_TABLE} AS s JOIN {view.table} AS v USING (transaction_id) "
            "WHERE s.model_version = $version AND v.event_time > $start",
            {"version": version, "start": start},
            rows,
        )
    except duckdb.CatalogException:  # no score was ever stored
        return pd.DataFrame({"score": []})


def _average_precision(model: VerifiedModel, rows: pd.DataFrame, known_by) -> tuple[float | None, int]:
    """The model's average precision on `rows` with the fraud reported before `known_by`
    as positives (None without any), and the number of those."""
    labels = ((rows["is_fraud"] == 1) & (rows["label_reported_at"] < known_by)).astype(int)
    if labels.sum() == 0:
        return None, 0
    return float(average_precision_score(labels, _scores(model, rows))), int(labels.sum())


def build_performance_asset(view: FeatureView) -> AssetsDefinition:
    @asset(
        name="champion_performance",
        description="The champion's average precision on the latest window with reported fraud, against the same "
        "measure on its test window.",
        deps=[view.name, "champion_model"],
        group_name="monitoring",
        kinds={"catboost"},
        pool="warehouse",
        check_specs=[
            AssetCheckSpec(
                NO_PERFORMANCE_DROP,
                asset="champion_performance",
                description="Average precision has not fallen by more than the configured drop.",
            )
        ],
    )
    def champion_performance(
        context: AssetExecutionContext,
        config: PerformanceConfig,
        warehouse: WarehouseResource,
        model_registry: ModelRegistryResource,
    ) -> MaterializeResult:
        model = load_champion(model_registry.registry(), view)
        tags = model.tags  # its training and test windows among them
        delay, length = dt.timedelta(days=config.label_delay_days), dt.timedelta(days=config.window_days)
        window = _in_window(f"{', '.join(view.feature_names)}, is_fraud, label_reported_at", view.table)
        with warehouse.connect() as con:
            now = _data_clock(con, view)
            recent_end = now - delay
            recent = con.execute(window, {"start": recent_end - length, "end": recent_end}).df()
            # The same measure on the champion's test window: as long, with labels as late.
            test_end = pd.Timestamp(tags["test_end"]).to_pydatetime()
            reference = con.execute(window, {"start": test_end - length, "end": test_end}).df()
        recent_ap, recent_frauds = _average_precision(model, recent, now)
        reference_ap, reference_frauds = _average_precision(model, reference, test_end + delay)
        metadata = {
            "champion_version": model.version,
            "recent_window": f"{recent_end - length}..{recent_end}",
            "recent_average_precision": float("nan") if recent_ap is None else recent_ap,
            "recent_frauds_known": recent_frauds,
            "reference_window": f"{test_end - length}..{test_end}",
            "reference_average_precision": float("nan") if reference_ap is None else reference_ap,
            "reference_frauds_known": reference_frauds,
            "labels_known_by": str(now),
        }
        if recent_ap is None or reference_ap is None:
            # Nothing to compare yet; the check passes and says so rather than guessing.
            context.log.warning("no reported fraud in one of the windows: performance not evaluated")
            passed, verdict = True, "not evaluated: no reported fraud in one of the windows"
        else:
            passed = recent_ap >= reference_ap - config.max_drop
            verdict = f"average precision {recent_ap:.4f} vs {reference_ap:.4f} on the champion's test window"
        context.log.info(verdict)
        return MaterializeResult(
            metadata={**metadata, "verdict": verdict},
            check_results=[
                AssetCheckResult(
                    check_name=NO_PERFORMANCE_DROP,
                    passed=passed,
                    metadata={"verdict": verdict, "max_drop": config.max_drop, **metadata},
                )
            ],
        )

    return champion_performance


def build_monitoring_assets(view: FeatureView) -> list[AssetsDefinition]:
    return [build_feature_drift_asset(view), build_prediction_drift_asset(view), build_performance_asset(view)]
