"""Training: training data from the feature view, the CatBoost model tracked in MLflow, and
the promotion gate that decides which registered version is the champion."""
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field
from sklearn.metrics import average_precision_score

from mlops_assets.assets.materialization import warehouse_materialization
from mlops_assets.features.catalog import FeatureView
from mlops_assets.models.evaluation import evaluate_scores, save_charts
from mlops_assets.models.registry import (
    CHALLENGER,
    CHAMPION,
    ModelIntegrityError,
    ModelRegistry,
    VerifiedModel,
)
from mlops_assets.models.training import (
    CatBoostSettings,
    TrainingDataError,
    fit_baseline,
    fit_catboost,
)
from mlops_assets.models.training_data import (
    TRAINING_DATA_TABLE,
    TrainingWindowError,
    build_training_data,
    resolve_windows,
    stored_windows,
)
from mlops_assets.resources.mlflow import ModelRegistryResource
from mlops_assets.resources.warehouse import WarehouseResource


class TrainingDataConfig(Config):
    """How the feature view is split by time into training and test windows."""

    train_start: str | None = Field(
        default=None, description="First day of the training window, YYYY-MM-DD. Empty: warmup_days after the data starts."
    )
    train_end: str | None = Field(
        default=None,
        description="Day the training window ends (exclusive), YYYY-MM-DD. Empty: so that the test window ends with the data.",
    )
    delay_days: int = Field(
        default=7,
        description="Days between the training and test windows. Fraud reports arrive late: the model is trained "
        "delay_days after its window ends, with the labels known by then.",
    )
    test_days: int = Field(default=28, description="Length of the test window in days.")
    warmup_days: int = Field(
        default=7, description="Days at the start of the data left out, so rolling features have history."
    )


class FraudModelConfig(Config):
    """CatBoost training settings."""

    iterations: int = Field(default=1500, description="Maximum boosting iterations (early stopping may stop sooner).")
    learning_rate: float = Field(default=0.05, description="Boosting learning rate.")
    depth: int = Field(default=6, description="Tree depth.")
    threads: int = Field(default=2, description="CPU threads for CatBoost.")
    class_weights: str = Field(
        default="SqrtBalanced",
        description="CatBoost auto_class_weights for the rare fraud class: None, Balanced or SqrtBalanced "
        "(the best average precision on simulated data; Balanced over-weights the noisy recent labels).",
    )
    early_stopping_rounds: int = Field(default=150, description="Stop after this many rounds without validation gain.")
    validation_fraction: float = Field(
        default=0.2, description="Share of the training window, at its end, used for early stopping."
    )
    operating_threshold: float = Field(
        default=0.5, description="Score at or above which a transaction counts as flagged, for precision and recall."
    )
    seed: int = Field(default=42, description="Random seed.")


class PromotionConfig(Config):
    """The promotion gate."""

    margin: float = Field(
        default=0.0,
        description="The new version becomes champion only if its average precision beats the champion's "
        "on the same test window by at least this much.",
    )


def _stats(frame: pd.DataFrame, split: str) -> tuple[int, int]:
    rows = frame[frame["split"] == split]
    return len(rows), int(rows["label"].sum())


def build_training_data_asset(view: FeatureView) -> AssetsDefinition:
    @asset(
        name="training_data",
        description="Feature-view rows of a training window and a later test window, with the labels known at training time.",
        deps=[view.name],
        group_name="training",
        kinds={"duckdb"},
        pool="warehouse",
    )
    def training_data(
        context: AssetExecutionContext, config: TrainingDataConfig, warehouse: WarehouseResource
    ) -> MaterializeResult:
        with warehouse.connect() as con:
            first_day, last_day = con.execute(
                f"SELECT min(event_time)::DATE, max(event_time)::DATE FROM {view.table}"
            ).fetchone()
            try:
                windows = resolve_windows(
                    first_day,
                    last_day,
                    pd.Timestamp(config.train_start).date() if config.train_start else None,
                    pd.Timestamp(config.train_end).date() if config.train_end else None,
                    config.delay_days,
                    config.test_days,
                    config.warmup_days,
                )
            except TrainingWindowError as error:
                raise Failure(description=str(error), allow_retries=False) from error
            context.log.info(f"windows: {windows.as_dict()}")
            build_training_data(con, view, windows)
            counts = dict(
                (split, (rows, frauds))
                for split, rows, frauds in con.execute(
                    f"SELECT split, count(*), sum(label)::BIGINT FROM {TRAINING_DATA_TABLE} GROUP BY split"
                ).fetchall()
            )
            train_rows, train_frauds = counts.get("train", (0, 0))
            test_rows, test_frauds = counts.get("test", (0, 0))
            if train_frauds == 0 or test_frauds == 0:
                raise Failure(
                    description=f"no known fraud in the {'training' if train_frauds == 0 else 'test'} window "
                    f"({windows.as_dict()}): widen the windows or load more labels",
                    allow_retries=False,
                )
            return warehouse_materialization(
                context,
                con,
                TRAINING_DATA_TABLE,
                upstream=[view.name],
                extra_metadata={
                    **windows.as_dict(),
                    "train_rows": train_rows,
                    "train_frauds_known": train_frauds,
                    "test_rows": test_rows,
                    "test_frauds": test_frauds,
                },
            )

    return training_data


def _scored(frame: pd.DataFrame, scores) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_time": frame["event_time"].to_numpy(),
            "customer_id": frame["customer_id"].to_numpy(),
            "is_fraud": frame["label"].to_numpy(),
            "score": scores,
        }
    )


def _log_evaluation(scored: pd.DataFrame, importance: dict[str, float], threshold: float, title: str) -> dict:
    """Logs test metrics and charts to the active MLflow run and returns the metrics."""
    metrics = evaluate_scores(scored, threshold)
    mlflow.log_metrics({f"test_{name}": value for name, value in metrics.items()})
    with tempfile.TemporaryDirectory() as charts:
        save_charts(scored, importance, Path(charts), title)
        mlflow.log_artifacts(charts, artifact_path="charts")
    return metrics


def build_fraud_model_asset(view: FeatureView) -> AssetsDefinition:
    @asset(
        name="fraud_model",
        description="CatBoost fraud classifier trained on the training window, tracked in MLflow and registered as fraud_detector.",
        deps=["training_data"],
        group_name="training",
        kinds={"catboost", "mlflow"},
        required_resource_keys={"warehouse", "mlflow", "model_registry"},
    )
    def fraud_model(context: AssetExecutionContext, config: FraudModelConfig) -> MaterializeResult:
        try:
            return _train_and_register(context, config, view)
        except BaseException:
            mlflow.end_run(status="FAILED")  # the Dagster run's MLflow run shows the failure too
            raise

    return fraud_model


def _train_and_register(context: AssetExecutionContext, config: FraudModelConfig, view: FeatureView) -> MaterializeResult:
    features = list(view.feature_names)
    with context.resources.warehouse.connect() as con:
        frame = con.execute(f"SELECT * FROM {TRAINING_DATA_TABLE}").df()
        windows = stored_windows(con)
    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    tracker = context.resources.mlflow
    tracker.log_params(
        {
            **config.model_dump(),
            **windows.as_dict(),
            "feature_view": view.name,
            "feature_view_version": view.version,
            "features": ",".join(features),
            "train_rows": len(train),
            "test_rows": len(test),
        }
    )
    tracker.set_tags({"dagster_run_id": context.run.run_id, "feature_view_version": view.version})

    context.log.info(f"fitting CatBoost on {len(train):,} rows ({config.validation_fraction:.0%} for early stopping)")
    settings = CatBoostSettings(
        iterations=config.iterations,
        learning_rate=config.learning_rate,
        depth=config.depth,
        threads=config.threads,
        class_weights=config.class_weights,
        early_stopping_rounds=config.early_stopping_rounds,
        seed=config.seed,
    )
    try:
        model, trees = fit_catboost(train, features, settings, config.validation_fraction)
    except TrainingDataError as error:
        raise Failure(description=str(error), allow_retries=False) from error
    importance = dict(zip(features, model.get_feature_importance()))
    metrics = _log_evaluation(
        _scored(test, model.predict_proba(test[features])[:, 1]), importance, config.operating_threshold, "CatBoost"
    )
    tracker.log_metric("trees", trees)
    context.log.info(f"CatBoost test metrics: {metrics}")

    context.log.info("fitting the logistic-regression baseline")
    baseline = fit_baseline(train, features)
    with mlflow.start_run(run_name="logistic_regression_baseline", nested=True):
        mlflow.set_tags({"dagster_run_id": context.run.run_id, "model": "baseline"})
        mlflow.log_params({**windows.as_dict(), "feature_view_version": view.version, "class_weight": "balanced"})
        coefficients = dict(zip(features, abs(baseline[-1].coef_[0])))
        baseline_metrics = _log_evaluation(
            _scored(test, baseline.predict_proba(test[features])[:, 1]),
            coefficients,
            config.operating_threshold,
            "Logistic regression",
        )
    tracker.log_metrics({f"baseline_test_{name}": value for name, value in baseline_metrics.items()})
    context.log.info(f"baseline test metrics: {baseline_metrics}")

    registry: ModelRegistry = context.resources.model_registry.registry()
    version = registry.register(
        model,
        view,
        tags={
            "dagster_run_id": context.run.run_id,
            "mlflow_run_id": mlflow.active_run().info.run_id,
            **windows.as_dict(),
        },
    )
    context.log.info(f"registered {registry.model_name} version {version.version}")
    return MaterializeResult(
        metadata={
            "model_name": registry.model_name,
            "model_version": str(version.version),
            "mlflow_run_id": version.run_id,
            "mlflow_tracking_uri": registry.tracking_uri,
            "feature_view_version": view.version,
            "trees": trees,
            **{f"test_{name}": float(value) for name, value in metrics.items()},
            **{f"baseline_test_{name}": float(value) for name, value in baseline_metrics.items()},
            "feature_importance": MetadataValue.json(
                dict(sorted(((k, round(float(v), 3)) for k, v in importance.items()), key=lambda kv: -kv[1]))
            ),
        }
    )


def load_champion(registry: ModelRegistry, view: FeatureView) -> VerifiedModel:
    """The verified champion version; a run fails with the fix when there is none or it does
    not fit the feature view."""
    version = registry.version_with_alias(CHAMPION)
    if version is None:
        raise Failure(description=f"{registry.model_name} has no champion: materialize champion_model first")
    try:
        return registry.load_verified(version, view)
    except ModelIntegrityError as error:
        raise Failure(description=str(error), allow_retries=False) from error


def _average_precision_on_test(registry: ModelRegistry, version: str, view: FeatureView, test: pd.DataFrame) -> float:
    model = registry.load_verified(version, view).model
    return float(average_precision_score(test["label"], model.predict_proba(test[list(view.feature_names)])[:, 1]))


def build_champion_model_asset(view: FeatureView) -> AssetsDefinition:
    @asset(
        name="champion_model",
        description="The promotion gate: which fraud_detector version holds the `champion` alias, and why.",
        deps=["fraud_model", "training_data"],
        group_name="training",
        kinds={"mlflow"},
    )
    def champion_model(
        context: AssetExecutionContext,
        config: PromotionConfig,
        warehouse: WarehouseResource,
        model_registry: ModelRegistryResource,
    ) -> MaterializeResult:
        trained = context.instance.get_latest_materialization_event(AssetKey("fraud_model"))
        if trained is None:
            raise Failure(description="fraud_model has never been materialized: train a model first")
        new_version = str(trained.asset_materialization.metadata["model_version"].value)
        registry = model_registry.registry()
        with warehouse.connect() as con:
            test = con.execute(f"SELECT * FROM {TRAINING_DATA_TABLE} WHERE split = 'test'").df()
        new_ap = _average_precision_on_test(registry, new_version, view, test)
        champion_version = registry.version_with_alias(CHAMPION)
        champion_ap = None
        if champion_version is None:
            promote, reason = True, "there is no champion yet"
        elif champion_version == new_version:
            promote, reason = True, "this version is already the champion"
        else:
            try:
                champion_ap = _average_precision_on_test(registry, champion_version, view, test)
            except ModelIntegrityError as error:
                context.log.warning(f"the champion cannot be evaluated: {error}")
                promote, reason = True, f"the champion cannot score the current feature view ({error})"
            else:
                promote = new_ap >= champion_ap + config.margin
                reason = (
                    f"average precision {new_ap:.4f} vs champion {champion_ap:.4f} "
                    f"({'meets' if promote else 'misses'} the margin {config.margin})"
                )
        alias = CHAMPION if promote else CHALLENGER
        registry.set_alias(alias, new_version)
        registry.client.set_model_version_tag(registry.model_name, new_version, "promotion_decision", reason)
        context.log.info(f"version {new_version} -> {alias}: {reason}")
        return MaterializeResult(
            metadata={
                "decision": "promoted" if promote else "kept as challenger",
                "reason": reason,
                "new_version": new_version,
                "new_average_precision": new_ap,
                "champion_version_before": str(champion_version),
                "champion_average_precision": float("nan") if champion_ap is None else champion_ap,
                "margin": config.margin,
                "champion_version": new_version if promote else str(champion_version),
            }
        )

    return champion_model
