"""Tests of the payment-gateway simulator, on small real simulations."""

import dataclasses
import datetime

import numpy as np
import pandas as pd
import pytest

from mlops_assets.services.simulator import (
    DRIFT_FRAUD_SCENARIO,
    DRIFTS,
    FRAUD_SCENARIOS,
    SimulatedDataset,
    SimulationConfig,
    simulate,
    write_dataset,
)

SMALL = SimulationConfig(customers=300, terminals=150, days=14, seed=1)
# Big enough for every fraud scenario to occur and the fraud rate to settle.
MODERATE = SimulationConfig(customers=1500, terminals=600, days=60, seed=3)

DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def small() -> SimulatedDataset:
    return simulate(SMALL)


@pytest.fixture(scope="module")
def moderate() -> SimulatedDataset:
    return simulate(MODERATE)


def _frames(dataset: SimulatedDataset) -> dict[str, pd.DataFrame]:
    return {
        "transactions": dataset.transactions,
        "fraud_labels": dataset.fraud_labels,
        "customers": dataset.customers,
        "terminals": dataset.terminals,
        "fraud_truth": dataset.fraud_truth,
    }


def _haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(x, dtype=float)) for x in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(a))


def _with_truth(dataset: SimulatedDataset) -> pd.DataFrame:
    """Transactions with their scenario ("genuine" when not fraudulent)."""
    tx = dataset.transactions.merge(dataset.fraud_truth, on="transaction_id", how="left")
    tx["scenario"] = tx["scenario"].fillna("genuine")
    return tx


def _with_places(tx: pd.DataFrame, dataset: SimulatedDataset) -> pd.DataFrame:
    tx = tx.merge(dataset.customers, on="customer_id").merge(dataset.terminals, on="terminal_id")
    tx["distance_km"] = _haversine_km(tx["home_lat"], tx["home_lon"], tx["lat"], tx["lon"])
    return tx


# --- Determinism -------------------------------------------------------------


def test_same_seed_gives_identical_dataset(small):
    again = simulate(SMALL)
    for name, frame in _frames(small).items():
        pd.testing.assert_frame_equal(frame, _frames(again)[name], obj=name)


def test_other_seed_gives_different_data(small):
    other = simulate(SimulationConfig(customers=300, terminals=150, days=14, seed=2))
    assert not small.transactions.equals(other.transactions)
    assert not small.customers.equals(other.customers)


# --- Data contract -----------------------------------------------------------


def test_tables_have_the_contract_columns_and_dtypes(small):
    expected = {
        "transactions": {
            "transaction_id": "object",
            "event_time": "datetime64[us]",
            "customer_id": "object",
            "terminal_id": "object",
            "amount": "float64",
            "currency": "object",
        },
        "fraud_labels": {"transaction_id": "object", "is_fraud": "int8", "reported_at": "datetime64[us]"},
        "customers": {"customer_id": "object", "home_lat": "float64", "home_lon": "float64"},
        "terminals": {
            "terminal_id": "object",
            "lat": "float64",
            "lon": "float64",
            "merchant_category": "object",
        },
        "fraud_truth": {"transaction_id": "object", "scenario": "object"},
    }
    for name, frame in _frames(small).items():
        assert {column: str(dtype) for column, dtype in frame.dtypes.items()} == expected[name], name
        assert len(frame) > 0, name
    assert small.transactions["event_time"].dt.tz is None


def test_ids_are_unique_and_well_formed(small):
    tx = small.transactions
    assert tx["transaction_id"].is_unique
    assert small.customers["customer_id"].is_unique
    assert small.terminals["terminal_id"].is_unique
    assert tx["transaction_id"].iloc[0] == "tx0000000001"
    assert tx["transaction_id"].str.fullmatch(r"tx\d{10}").all()
    assert small.customers["customer_id"].str.fullmatch(r"cust\d{5}").all()
    assert small.terminals["terminal_id"].str.fullmatch(r"term\d{5}").all()
    assert tx["customer_id"].isin(small.customers["customer_id"]).all()
    assert tx["terminal_id"].isin(small.terminals["terminal_id"]).all()


def test_transaction_ids_follow_event_time(small):
    tx = small.transactions
    assert tx["event_time"].is_monotonic_increasing
    assert tx["transaction_id"].is_monotonic_increasing


def test_transactions_fall_within_the_period(small):
    start = pd.Timestamp(SMALL.start)
    times = small.transactions["event_time"]
    assert times.min() >= start
    assert times.max() < start + SMALL.days * DAY


def test_amounts_are_non_negative_cents(small):
    amount = small.transactions["amount"]
    assert (amount >= 0).all()
    assert np.allclose(amount, amount.round(2))


def test_currencies_are_iso_codes_and_foreign_ones_are_fraud(moderate):
    tx = _with_truth(moderate)
    assert tx["currency"].str.fullmatch(r"[A-Z]{3}").all()
    assert (tx.loc[tx["scenario"] == "genuine", "currency"] == "EUR").all()


def test_tiny_config_still_works():
    dataset = simulate(SimulationConfig(customers=1, terminals=1, days=1))
    assert list(dataset.transactions.columns) == [
        "transaction_id", "event_time", "customer_id", "terminal_id", "amount", "currency",
    ]


@pytest.mark.parametrize("field", ["customers", "terminals", "days"])
def test_invalid_config_names_the_field(field):
    with pytest.raises(ValueError, match=field):
        SimulationConfig(**{field: 0})


# --- Realism of genuine behaviour ----------------------------------------------


def test_daily_and_weekly_rhythm(moderate):
    times = moderate.transactions["event_time"]
    hourly = times.dt.hour.value_counts(normalize=True)
    assert hourly.loc[0:5].sum() < 0.05  # quiet nights
    assert hourly.loc[12] > 3 * hourly.loc[3]  # busy lunchtime
    weekday = times.dt.dayofweek.value_counts()
    assert weekday.loc[6] < 0.7 * weekday.loc[5]  # Sundays quieter than Saturdays
    assert times.duplicated().mean() < 0.001  # microsecond time stamps rarely tie


def test_customers_shop_near_home(moderate):
    tx = _with_places(_with_truth(moderate), moderate)
    genuine = tx[tx["scenario"].isin(["genuine", "compromised_terminal"])]
    assert genuine["distance_km"].median() < 30


# --- Fraud ---------------------------------------------------------------------


def test_fraud_rate_is_realistic(moderate):
    rate = len(moderate.fraud_truth) / len(moderate.transactions)
    assert 0.002 <= rate <= 0.01


def test_all_scenarios_occur_on_existing_transactions(moderate):
    truth = moderate.fraud_truth
    assert set(truth["scenario"]) == set(FRAUD_SCENARIOS)
    assert truth["transaction_id"].is_unique
    assert truth["transaction_id"].isin(moderate.transactions["transaction_id"]).all()


def test_compromised_terminals_are_few_and_short_lived(moderate):
    tx = _with_truth(moderate)
    compromised = tx[tx["scenario"] == "compromised_terminal"]
    terminals = compromised.groupby("terminal_id")["event_time"]
    assert terminals.ngroups <= 0.05 * len(moderate.terminals)
    assert (terminals.max() - terminals.min() <= 28 * DAY).all()


def test_stolen_cards_spend_big_at_unfamiliar_terminals(moderate):
    tx = _with_truth(moderate)
    genuine = tx[tx["scenario"] == "genuine"]
    stolen = tx[tx["scenario"] == "stolen_card"]
    typical = genuine.groupby("customer_id")["amount"].median()
    ratio = stolen["amount"] / stolen["customer_id"].map(typical)
    assert ratio.median() > 2
    familiar = set(zip(genuine["customer_id"], genuine["terminal_id"]))
    assert not any(pair in familiar for pair in zip(stolen["customer_id"], stolen["terminal_id"]))


def test_card_testing_uses_small_amounts_online(moderate):
    tx = _with_places(_with_truth(moderate), moderate)
    testing = tx[tx["scenario"] == "card_testing"]
    # Each burst has at least 5 small payments and at most one large cash-out.
    assert testing["amount"].between(0.5, 3.0).mean() >= 5 / 6
    assert (testing["merchant_category"] == "online").all()


def test_impossible_travel_is_far_from_home_and_close_in_time(moderate):
    tx = _with_places(_with_truth(moderate), moderate)
    travel = tx[tx["scenario"] == "impossible_travel"]
    assert (travel["distance_km"] > 300).all()

    near_home = tx[(tx["scenario"] == "genuine") & (tx["distance_km"] < 100)]
    pairs = travel[["transaction_id", "customer_id", "event_time"]].merge(
        near_home[["customer_id", "event_time"]], on="customer_id", suffixes=("", "_home")
    )
    pairs["gap"] = (pairs["event_time"] - pairs["event_time_home"]).abs()
    closest = pairs.groupby("transaction_id")["gap"].min()
    assert len(closest) == len(travel)
    assert (closest <= pd.Timedelta(hours=1)).all()


# --- Labels --------------------------------------------------------------------


def test_every_fraud_is_reported_within_1_to_60_days(moderate):
    labels = moderate.fraud_labels.merge(moderate.transactions, on="transaction_id")
    fraud_labels = labels[labels["is_fraud"] == 1]
    assert set(fraud_labels["transaction_id"]) == set(moderate.fraud_truth["transaction_id"])
    delay = fraud_labels["reported_at"] - fraud_labels["event_time"]
    assert delay.min() >= DAY
    assert delay.max() <= 60 * DAY
    assert 3 * DAY < delay.median() < 14 * DAY


def test_labels_reference_transactions_once_and_include_cleared_disputes(moderate):
    labels = moderate.fraud_labels
    assert labels["transaction_id"].is_unique
    assert labels["transaction_id"].isin(moderate.transactions["transaction_id"]).all()
    assert set(labels["is_fraud"]) == {0, 1}
    cleared = labels[labels["is_fraud"] == 0]
    assert not cleared["transaction_id"].isin(moderate.fraud_truth["transaction_id"]).any()
    assert 0.0005 <= len(cleared) / len(moderate.transactions) <= 0.002


# --- Progress and files --------------------------------------------------------


def test_progress_is_reported_in_a_few_lines():
    messages: list[str] = []
    simulate(SMALL, progress=messages.append)
    assert any(message.startswith("customers:") for message in messages)
    assert 1 <= sum(message.startswith("transactions:") for message in messages) <= 10
    assert any("fraudulent transactions" in message for message in messages)


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_write_dataset_round_trips(small, tmp_path, file_format):
    paths = write_dataset(small, tmp_path / "out", file_format=file_format)
    assert set(paths) == {"transactions", "fraud_labels", "customers", "terminals", "fraud_truth"}
    for name, frame in _frames(small).items():
        assert paths[name] == tmp_path / "out" / f"{name}.{file_format}"
        if file_format == "parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(paths[name]), frame, obj=name)
        else:
            back = pd.read_csv(paths[name])
            assert len(back) == len(frame), name
            assert list(back.columns) == list(frame.columns), name
            assert back.iloc[:, 0].tolist() == frame.iloc[:, 0].tolist(), name

    if file_format == "csv":
        back = pd.read_csv(paths["transactions"], parse_dates=["event_time"])
        assert back["event_time"].tolist() == small.transactions["event_time"].tolist()
        first_line = paths["transactions"].read_text().splitlines()[1]
        assert "T" in first_line.split(",")[1]  # ISO-8601


def test_write_dataset_rejects_unknown_format(small, tmp_path):
    with pytest.raises(ValueError, match="file_format"):
        write_dataset(small, tmp_path, file_format="xlsx")


# --- Drift on demand -----------------------------------------------------------

DRIFT_START = datetime.date(2026, 1, 8)


def _drifted(drift: str) -> SimulatedDataset:
    return simulate(dataclasses.replace(SMALL, drift=drift, drift_start=DRIFT_START))


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    before = frame["event_time"] < pd.Timestamp(DRIFT_START)
    return frame[before], frame[~before]


@pytest.mark.parametrize("drift", DRIFTS)
def test_drift_leaves_the_days_before_it_exactly_as_without_drift(small, drift):
    drifted = _drifted(drift)
    before, _ = _split(drifted.transactions)
    pd.testing.assert_frame_equal(before, _split(small.transactions)[0])
    labels_before = drifted.fraud_labels[drifted.fraud_labels["transaction_id"].isin(before["transaction_id"])]
    expected = small.fraud_labels[small.fraud_labels["transaction_id"].isin(before["transaction_id"])]
    pd.testing.assert_frame_equal(labels_before.reset_index(drop=True), expected.reset_index(drop=True))
    assert drifted.transactions["transaction_id"].is_unique
    assert drifted.transactions["event_time"].is_monotonic_increasing


def test_spending_shift_makes_payments_bigger_and_more_frequent(small):
    _, after = _split(_drifted("spending_shift").transactions)
    _, baseline = _split(small.transactions)
    assert after["amount"].median() > 1.4 * baseline["amount"].median()
    assert len(after) > 1.3 * len(baseline)


def test_new_fraud_pattern_is_account_takeover_at_usual_terminals_after_the_date(small):
    drifted = _drifted("new_fraud_pattern")
    tx = _with_truth(drifted)
    takeovers = tx[tx["scenario"] == DRIFT_FRAUD_SCENARIO]
    assert len(takeovers) > 0 and (takeovers["event_time"] >= pd.Timestamp(DRIFT_START)).all()
    assert set(small.fraud_truth["scenario"]) <= set(FRAUD_SCENARIOS)  # never without the option
    genuine = tx[tx["scenario"] == "genuine"]
    usual = set(zip(genuine["customer_id"], genuine["terminal_id"]))
    at_usual = [pair in usual for pair in zip(takeovers["customer_id"], takeovers["terminal_id"])]
    assert np.mean(at_usual) > 0.8  # hidden from the terminal features
    typical = genuine.groupby("customer_id")["amount"].median()
    ratio = takeovers["amount"].to_numpy() / typical.loc[takeovers["customer_id"]].to_numpy()
    assert 0.8 < np.median(ratio) < 3  # ordinary-looking amounts, unlike a stolen card's
    reported = drifted.fraud_labels.set_index("transaction_id").loc[takeovers["transaction_id"]]
    assert (reported["is_fraud"] == 1).all()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"drift": "meteor"}, "drift must be one of"),
        ({"drift": "spending_shift"}, "set both or neither"),
        ({"drift_start": DRIFT_START}, "set both or neither"),
        ({"drift": "spending_shift", "drift_start": datetime.date(2027, 1, 1)}, "must fall after 2026-01-01 and before 2026-01-15"),
    ],
)
def test_invalid_drift_options_say_what_to_fix(options, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SMALL, **options)
