"""Point-in-time correctness of the compiled feature SQL, on hand-made data with known answers
and on simulated data."""
import datetime as dt
import math

import pandas as pd
import pytest

from mlops_assets.contracts import CONTRACTS
from mlops_assets.features.offline import (
    feature_group_sql,
    feature_view_sql,
    label_group_sql,
)
from mlops_assets.ingestion import ensure_tables, load_file

T0 = dt.datetime(2026, 1, 1, 0, 0, 0)  # a Thursday
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
MICROSECOND = dt.timedelta(microseconds=1)

# Customer c1 pays at terminal m1, except where noted. The comments give what each
# transaction's windows contain: [t - w, t), earlier events only.
TRANSACTIONS = [
    ("a", T0, "c1", "m1", 10.0),
    ("b", T0 + HOUR / 2, "c1", "m1", 20.0),
    ("c", T0 + HOUR, "c1", "m1", 30.0),  # 1h window starts exactly at a: a, b count
    ("d", T0 + HOUR, "c1", "m2", 50.0),  # same instant as c: c and d never see each other
    ("e", T0 + HOUR + MICROSECOND, "c1", "m1", 40.0),  # a is 1h+1us ago: out of 1h
    ("f", T0 + DAY, "c1", "m1", 60.0),  # 1d window starts exactly at a: a..e count
    ("g", T0 + DAY + MICROSECOND, "c1", "m1", 70.0),  # a is out of 1d
    ("h", T0 + 2 * DAY + 3 * HOUR, "c2", "m1", 5.0),  # Saturday 03:00, another customer
]
# Fraud reports at terminal m1: a reported just before g, b reported exactly at g's time.
LABELS = [
    ("a", 1, T0 + DAY + MICROSECOND - MICROSECOND),
    ("b", 1, T0 + DAY + MICROSECOND),
    ("e", 0, T0 + HOUR * 2),  # a cleared dispute is not fraud
]
CUSTOMERS = [("c1", 0.0, 0.0), ("c2", 48.8566, 2.3522)]
TERMINALS = [("m1", 0.0, 1.0, "grocery"), ("m2", 0.0, 0.0, "online")]


def _insert(con, contract_name: str, rows: list[tuple]) -> None:
    contract = CONTRACTS[contract_name]
    columns = [f.name for f in contract.fields][: len(rows[0])]
    frame = pd.DataFrame(rows, columns=columns)
    if contract_name == "transactions":
        frame["currency"] = "EUR"
        columns = columns + ["currency"]
    con.register("frame", frame)
    con.execute(f"INSERT INTO {contract.table} ({', '.join(columns)}) SELECT * FROM frame")
    con.unregister("frame")


def load_handmade(con, transactions: list[tuple] = TRANSACTIONS) -> None:
    """The hand-made inputs (or other `transactions` with the same labels and profiles)."""
    for contract in CONTRACTS.values():
        ensure_tables(con, contract)
    _insert(con, "transactions", transactions)
    _insert(con, "fraud_labels", LABELS)
    _insert(con, "customers", CUSTOMERS)
    _insert(con, "terminals", TERMINALS)


@pytest.fixture
def handmade(warehouse):
    with warehouse.connect() as con:
        load_handmade(con)
        yield con


def _group_by_name(catalog, name):
    return next(group for group in catalog.groups if group.name == name)


def _features(con, catalog, group_name: str) -> pd.DataFrame:
    sql = feature_group_sql(_group_by_name(catalog, group_name))
    return con.execute(sql).df().set_index("transaction_id").sort_index()


def test_customer_windows_count_only_earlier_transactions_with_inclusive_start(handmade, catalog):
    features = _features(handmade, catalog, "customer_behaviour")
    count_1h = features["customer_tx_count_1h"].to_dict()
    assert count_1h == {"a": 0, "b": 1, "c": 2, "d": 2, "e": 3, "f": 0, "g": 1, "h": 0}
    assert features["customer_tx_count_10m"].to_dict() == {"a": 0, "b": 0, "c": 0, "d": 0, "e": 2, "f": 0, "g": 1, "h": 0}
    # Per customer *and* terminal: d was at m2, and h is another customer at m1.
    assert features.loc[["e", "g", "h"], "customer_terminal_tx_count_30d"].tolist() == [3, 5, 0]
    count_1d = features["customer_tx_count_1d"].to_dict()
    assert count_1d == {"a": 0, "b": 1, "c": 2, "d": 2, "e": 4, "f": 5, "g": 5, "h": 0}

    assert features.loc["c", "customer_amount_mean_1h"] == pytest.approx(15.0)
    assert features.loc["c", "customer_amount_std_1h"] == pytest.approx(math.sqrt(50))
    # e's last hour: b, c, d (a fell out by one microsecond)
    assert features.loc["e", "customer_amount_mean_1h"] == pytest.approx((20 + 30 + 50) / 3)
    # f's day: a, b, c, d, e; g's day loses a and gains f
    assert features.loc["f", "customer_amount_mean_1d"] == pytest.approx(150 / 5)
    assert features.loc["g", "customer_amount_mean_1d"] == pytest.approx(200 / 5)
    assert features.loc["g", "amount_to_customer_mean_1d"] == pytest.approx(70 / 40)
    # No history: no mean, no spread, no ratio; one earlier transaction: no sample spread.
    assert features.loc[["a", "h"], ["customer_amount_mean_1h", "amount_to_customer_mean_30d"]].isna().all().all()
    assert math.isnan(features.loc["b", "customer_amount_std_1h"])


def test_transaction_features(handmade, catalog):
    features = _features(handmade, catalog, "transaction_features")
    assert features["seconds_since_previous_tx"].fillna(-1).to_dict() == {
        "a": -1,
        "b": 1800,
        "c": 1800,
        "d": 1800,  # its twin c at the same instant is not "previous"
        "e": pytest.approx(1e-6),
        "f": pytest.approx(DAY.total_seconds() - HOUR.total_seconds() - 1e-6),
        "g": pytest.approx(1e-6),
        "h": -1,
    }
    # One degree of longitude at the equator.
    assert features.loc["a", "distance_from_home_km"] == pytest.approx(111.195, abs=0.01)
    assert features.loc["d", "distance_from_home_km"] == pytest.approx(0.0)
    assert features.loc["h", ["tx_hour", "tx_is_weekend", "tx_is_night"]].tolist() == [3, 1, 1]
    assert features.loc["c", ["tx_hour", "tx_is_weekend", "tx_is_night"]].tolist() == [1, 0, 1]
    assert features.loc["g", "tx_is_night"] == 1 and features.loc["b", "amount"] == 20.0


def test_terminal_fraud_rate_uses_only_labels_reported_before_the_transaction(handmade, catalog):
    features = _features(handmade, catalog, "terminal_behaviour")
    # Before g, every fraud label at m1 was still unknown: rates are 0, not a peek ahead.
    assert features.loc[["b", "c", "e", "f"], "terminal_fraud_rate_7d"].tolist() == [0, 0, 0, 0]
    # g at m1 sees a, b, c, e, f earlier; only a was reported strictly before g (b's report
    # arrives exactly at g's time and does not count).
    assert features.loc["g", "terminal_tx_count_7d"] == 5
    assert features.loc["g", "terminal_fraud_rate_7d"] == pytest.approx(1 / 5)
    # h, two days later, knows both frauds among m1's six earlier transactions.
    assert features.loc["h", "terminal_fraud_rate_7d"] == pytest.approx(2 / 6)
    # A terminal with no history has no rate; m2 saw only d.
    assert math.isnan(features.loc["a", "terminal_fraud_rate_7d"])
    assert features.loc["d", "terminal_tx_count_1d"] == 0


def test_labels_and_view_join_every_transaction(handmade, catalog):
    for group in catalog.groups:
        handmade.execute(f"CREATE OR REPLACE TABLE {group.table} AS {feature_group_sql(group)}")
    labels = catalog.label_groups[0]
    handmade.execute(f"CREATE OR REPLACE TABLE {labels.table} AS {label_group_sql(labels)}")
    view = catalog.views[0]
    rows = handmade.execute(feature_view_sql(view)).df().set_index("transaction_id")
    assert len(rows) == len(TRANSACTIONS)
    assert rows["is_fraud"].to_dict() == {t[0]: int(t[0] in ("a", "b")) for t in TRANSACTIONS}
    assert rows.loc["e", "label_reported_at"] == T0 + 2 * HOUR  # known, though not fraud
    assert pd.isna(rows.loc["c", "label_reported_at"])
    assert set(view.feature_names) <= set(rows.columns)
    assert (rows["feature_view_version"] == view.version).all()


def test_a_label_reported_after_t_never_changes_a_feature_at_t(warehouse, small_dataset_files, catalog):
    """Build features with every label, then with every label reported after a cut-off
    flipped and moved; features of transactions up to the cut-off must not move."""
    with warehouse.connect() as con:
        _check_no_label_leak(con, small_dataset_files, catalog)


def _check_no_label_leak(con, small_dataset_files, catalog):
    for name, contract in CONTRACTS.items():
        load_file(con, contract, str(small_dataset_files[name]), run_id="test")
    cutoff = con.execute("SELECT quantile_disc(event_time, 0.6) FROM raw.transactions").fetchone()[0]
    late = con.execute("SELECT count(*) FROM raw.fraud_labels WHERE reported_at > ?", [cutoff]).fetchone()[0]
    assert late > 10, "the data set needs labels reported after the cut-off"

    def features_up_to_cutoff() -> pd.DataFrame:
        frames = [
            con.execute(f"SELECT * EXCLUDE (event_time) FROM ({feature_group_sql(g)}) WHERE event_time <= ?", [cutoff])
            .df()
            .set_index("transaction_id")
            for g in catalog.groups
        ]
        return pd.concat(frames, axis=1).sort_index()

    before = features_up_to_cutoff()
    con.execute(
        "UPDATE raw.fraud_labels SET is_fraud = 1 - is_fraud, reported_at = reported_at + INTERVAL 3 DAY "
        "WHERE reported_at > ?",
        [cutoff],
    )
    # And a brand-new fraud report on many early transactions, arriving after the cut-off.
    con.execute(
        "INSERT INTO raw.fraud_labels (transaction_id, is_fraud, reported_at) "
        "SELECT transaction_id, 1, ?::TIMESTAMP + INTERVAL 1 HOUR FROM raw.transactions "
        "WHERE transaction_id NOT IN (SELECT transaction_id FROM raw.fraud_labels) "
        "AND hash(transaction_id) % 10 = 0",
        [cutoff],
    )
    after = features_up_to_cutoff()
    assert len(before) > 1000
    pd.testing.assert_frame_equal(before, after)
    # The labels did change something: features after the cut-off see them.
    rate_later = con.execute(
        f"SELECT sum(terminal_fraud_rate_30d) FROM ({feature_group_sql(_group_by_name(catalog, 'terminal_behaviour'))}) "
        "WHERE event_time > ?::TIMESTAMP + INTERVAL 2 HOUR",
        [cutoff],
    ).fetchone()[0]
    assert rate_later > 0
