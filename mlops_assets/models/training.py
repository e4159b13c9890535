"""Fitting the fraud model (CatBoost) and its baseline (logistic regression).

Early stopping watches a validation slice carved from the *end* of the training window, by
time, so the model never sees the test window while it is being fitted and the validation
rows are the ones most like the future it will score.
"""
from dataclasses import dataclass

import pandas as pd
from catboost import CatBoostClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class CatBoostSettings:
    iterations: int
    learning_rate: float
    depth: int
    threads: int
    class_weights: str
    early_stopping_rounds: int
    seed: int


def split_validation(train: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The last `fraction` of the training rows by time become the validation slice."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must be between 0 and 1, got {fraction}")
    ordered = train.sort_values(["event_time", "transaction_id"], kind="stable")
    cut = int(len(ordered) * (1 - fraction))
    return ordered.iloc[:cut], ordered.iloc[cut:]


class TrainingDataError(ValueError):
    """The training rows cannot train a model; the message says what to change."""


def _classifier(settings: CatBoostSettings, iterations: int, early_stopping: bool) -> CatBoostClassifier:
    return CatBoostClassifier(
        iterations=iterations,
        learning_rate=settings.learning_rate,
        depth=settings.depth,
        thread_count=settings.threads,
        auto_class_weights=None if settings.class_weights == "None" else settings.class_weights,
        eval_metric="Logloss",  # smoother than PR AUC on a validation slice with few frauds
        early_stopping_rounds=settings.early_stopping_rounds if early_stopping else None,
        use_best_model=early_stopping,
        random_seed=settings.seed,
        allow_writing_files=False,
        verbose=False,
    )


def fit_catboost(
    train: pd.DataFrame, features: list[str], settings: CatBoostSettings, validation_fraction: float
) -> tuple[CatBoostClassifier, int]:
    """Early stopping on the validation slice picks the number of trees; the model is then
    refit with that many trees on the whole training window, so its most recent days (the
    validation slice, the closest to what it will score) teach it too. Returns the model and
    its number of trees."""
    fit, validation = split_validation(train, validation_fraction)
    for name, rows in (("fitting", fit), ("validation", validation)):
        if rows["label"].sum() == 0:
            raise TrainingDataError(
                f"no known fraud in the {name} part of the training window: widen the training "
                "window (training_data config) or change validation_fraction"
            )
    probe = _classifier(settings, settings.iterations, early_stopping=True)
    probe.fit(fit[features], fit["label"], eval_set=(validation[features], validation["label"]))
    trees = probe.get_best_iteration() + 1
    model = _classifier(settings, trees, early_stopping=False)
    return model.fit(train[features], train["label"]), trees


def fit_baseline(train: pd.DataFrame, features: list[str]) -> Pipeline:
    """Standardised logistic regression with balanced class weights; missing values -> median."""
    baseline = make_pipeline(
        SimpleImputer(strategy="median"),
        StandardScaler(),
        LogisticRegression(class_weight="balanced", max_iter=2000),
    )
    return baseline.fit(train[features], train["label"])
