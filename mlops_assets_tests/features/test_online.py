"""Training/serving parity: the online feature store computes, for each transaction, the same
values as the offline feature view, on the hand-made point-in-time cases and on a replay of
simulated transactions after a bootstrap from the warehouse; also with duplicates,
out-of-order arrival, eviction, and a feature added in YAML alone."""
import datetime as dt
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_assets.contracts import CONTRACTS
from mlops_assets.features.catalog import FeatureCatalog, FeatureView, load_catalog
from mlops_assets.features.offline import (
    feature_group_sql,
    feature_view_sql,
    label_group_sql,
)
from mlops_assets.features.online import OnlineFeatureStore
from mlops_assets.ingestion import load_file
from mlops_assets.resources.warehouse import WarehouseResource
from mlops_assets.settings import REPOSITORY_ROOT
from mlops_assets_tests.features.test_offline import (
    CUSTOMERS,
    DAY,
    HOUR,
    LABELS,
    MICROSECOND,
    T0,
    TERMINALS,
    TRANSACTIONS,
    load_handmade,
)

VIEW = "fraud_feature_view"
TRANSACTION_COLUMNS = ("transaction_id", "event_time", "customer_id", "terminal_id", "amount")

# Transactions after a gap longer than every window: eviction must not change their features.
AFTER_A_GAP = [
    ("i", T0 + 40 * DAY, "c1", "m1", 80.0),
    ("j", T0 + 40 * DAY + HOUR, "c2", "m2", 90.0),
    ("k", T0 + 41 * DAY, "c1", "m1", 100.0),
]


# --- helpers ----------------------------------------------------------------------------


def _build_offline_view(con, catalog: FeatureCatalog) -> tuple[FeatureView, pd.DataFrame]:
    """Builds every feature group, the labels and the view; returns the view's rows."""
    for group in catalog.groups:
        con.execute(f"CREATE OR REPLACE TABLE {group.table} AS {feature_group_sql(group)}")
    for labels in catalog.label_groups:
        con.execute(f"CREATE OR REPLACE TABLE {labels.table} AS {label_group_sql(labels)}")
    view = catalog.view(VIEW)
    con.execute(f"CREATE OR REPLACE TABLE {view.table} AS {feature_view_sql(view)}")
    return view, con.execute(f"SELECT * FROM {view.table}").df().set_index("transaction_id")


def _as_dicts(rows: list[tuple]) -> list[dict]:
    return [dict(zip(TRANSACTION_COLUMNS, row)) for row in rows]


def _handmade_store(view: FeatureView) -> OnlineFeatureStore:
    return OnlineFeatureStore(
        view,
        {customer: (lat, lon) for customer, lat, lon in CUSTOMERS},
        {terminal: (lat, lon) for terminal, lat, lon, _ in TERMINALS},
    )


def _replay(
    store: OnlineFeatureStore,
    transactions: list[dict],
    labels: list[tuple[str, int, dt.datetime]],
    evicted: list[int] | None = None,
) -> pd.DataFrame:
    """Streams transactions in time order with the labels interleaved in report order (a
    label reported at exactly t arrives before t's features, which must ignore it); returns
    each transaction's online features, computed before it is added. With `evicted`, old
    history is evicted at each new day and the numbers of transactions dropped appended."""
    labels = sorted(labels, key=lambda label: label[2])
    next_label, evicted_day, rows = 0, None, {}
    for transaction in sorted(transactions, key=lambda t: (t["event_time"], t["transaction_id"])):
        now = transaction["event_time"]
        while next_label < len(labels) and labels[next_label][2] <= now:
            store.add_label(*labels[next_label])
            next_label += 1
        if evicted is not None and now.date() != evicted_day:
            evicted.append(store.evict(now))
            evicted_day = now.date()
        features = store.features(transaction)
        assert list(features) == list(store.view.feature_names)
        rows[transaction["transaction_id"]] = features
        store.add_transaction(transaction)
    return pd.DataFrame.from_dict(rows, orient="index")


def _assert_parity(online: pd.DataFrame, offline: pd.DataFrame, view: FeatureView) -> None:
    """Every feature equal within 1e-9 (absolute or relative), NaN equal to NaN."""
    expected = offline.loc[online.index]
    for name in view.feature_names:
        np.testing.assert_allclose(
            online[name].to_numpy(dtype=float),
            expected[name].to_numpy(dtype=float),
            rtol=1e-9,
            atol=1e-9,
            equal_nan=True,
            err_msg=f"feature {name}",
        )


def _names_of(view: FeatureView, function: str) -> list[str]:
    return [f.name for _, chosen in view.features for f in chosen if f.function == function]


# --- hand-made cases ----------------------------------------------------------------------


@pytest.fixture
def handmade(warehouse, catalog):
    with warehouse.connect() as con:
        load_handmade(con)
        view, offline = _build_offline_view(con, catalog)
        yield con, view, offline


def test_handmade_cases_online_equal_offline(handmade):
    _, view, offline = handmade
    online = _replay(_handmade_store(view), _as_dicts(TRANSACTIONS), LABELS)
    assert len(online) == len(TRANSACTIONS)
    _assert_parity(online, offline, view)
    # g sees a's fraud report (just before g) but not b's (exactly at g's time).
    assert online.loc["g", "terminal_fraud_rate_7d"] == pytest.approx(1 / 5)


@pytest.mark.parametrize("as_of", [T0, T0 + HOUR, T0 + DAY, T0 + DAY + MICROSECOND, TRANSACTIONS[-1][1]])
def test_bootstrap_from_the_warehouse_then_stream_the_rest(handmade, as_of):
    con, view, offline = handmade
    store = OnlineFeatureStore.from_warehouse(con, view, as_of=as_of)
    later = [t for t in _as_dicts(TRANSACTIONS) if t["event_time"] >= as_of]
    online = _replay(store, later, [label for label in LABELS if label[2] >= as_of])
    assert len(online) == len(later)
    _assert_parity(online, offline, view)


def test_duplicates_change_nothing(handmade):
    _, view, offline = handmade
    store = _handmade_store(view)
    rows = {}
    labels = sorted(LABELS, key=lambda label: label[2])
    for transaction in _as_dicts(TRANSACTIONS):
        for label in [label for label in labels if label[2] <= transaction["event_time"]]:
            store.add_label(*label)  # every label again and again
            store.add_label(label[0], 1 - label[1], label[2] - HOUR)  # a conflicting late copy
        rows[transaction["transaction_id"]] = store.features(transaction)
        store.add_transaction(transaction)
        store.add_transaction(transaction)
        store.add_transaction({**transaction, "amount": 1e6})  # same id: still a duplicate
    _assert_parity(pd.DataFrame.from_dict(rows, orient="index"), offline, view)


@pytest.mark.parametrize("seed", range(5))
def test_out_of_order_arrival_gives_offline_values(handmade, seed):
    """Transactions and labels arrive in any order (labels before their transactions too);
    each transaction's features see only what is strictly earlier than it."""
    _, view, offline = handmade
    store = _handmade_store(view)
    arrivals = [("transaction", t) for t in _as_dicts(TRANSACTIONS)] + [("label", label) for label in LABELS]
    random.Random(seed).shuffle(arrivals)
    for kind, item in arrivals:
        if kind == "transaction":
            store.add_transaction(item)
        else:
            store.add_label(*item)
    online = pd.DataFrame.from_dict(
        {t["transaction_id"]: store.features(t) for t in _as_dicts(TRANSACTIONS)}, orient="index"
    )
    _assert_parity(online, offline, view)


@pytest.mark.parametrize("seed", range(3))
def test_a_batch_gives_the_features_of_one_at_a_time(handmade, seed):
    """As the scoring service scores: a batch in any order, duplicates included, recorded and
    computed together, equals the offline view row for row."""
    _, view, offline = handmade
    store = _handmade_store(view)
    for label in LABELS:
        store.add_label(*label)
    transactions = _as_dicts(TRANSACTIONS)
    batch = transactions + transactions[:3]
    random.Random(seed).shuffle(batch)
    matrix = store.add_transactions(batch)
    assert matrix.shape == (len(batch), len(view.feature_names))
    online = pd.DataFrame(matrix, index=[t["transaction_id"] for t in batch], columns=list(view.feature_names))
    _assert_parity(online, offline, view)
    assert store.add_transactions([]).shape == (0, len(view.feature_names))


def test_a_late_transaction_counts_for_the_ones_after_it(handmade):
    _, view, offline = handmade
    store = _handmade_store(view)
    by_id = {t["transaction_id"]: t for t in _as_dicts(TRANSACTIONS)}
    for label in LABELS:
        store.add_label(*label)
    for transaction_id in "abdefc":  # c (same time as d) arrives after e and f
        store.add_transaction(by_id[transaction_id])
    online = pd.DataFrame.from_dict({"g": store.features(by_id["g"])}, orient="index")
    _assert_parity(online, offline, view)


def test_eviction_drops_old_history_but_no_feature_changes(warehouse, catalog):
    transactions = TRANSACTIONS + AFTER_A_GAP
    with warehouse.connect() as con:
        load_handmade(con, transactions)
        view, offline = _build_offline_view(con, catalog)
    store = _handmade_store(view)
    for transaction in _as_dicts(TRANSACTIONS):
        store.add_transaction(transaction)
    for label in LABELS:
        store.add_label(*label)
    first_after_gap = AFTER_A_GAP[0][1]
    assert store.evict(first_after_gap) == len(TRANSACTIONS)
    assert store.evict(first_after_gap) == 0
    store.add_transaction(_as_dicts(TRANSACTIONS)[0])  # a stale duplicate is not history again
    assert store.evict(first_after_gap + DAY) == 0
    # The time since the previous transaction still reaches back past the dropped history.
    online = _replay(store, _as_dicts(AFTER_A_GAP), [])
    _assert_parity(online, offline, view)
    assert online.loc["i", _names_of(view, "seconds_since_previous")].notna().all()


def test_eviction_keeps_nothing_it_drops(handmade):
    """Eviction visits only what expires: every transaction, history and report it drops is
    gone from the state, whatever order they arrived in."""
    _, view, _ = handmade
    store = _handmade_store(view)
    store.add_label("z", 1, T0)  # a report whose transaction never arrives
    for transaction in reversed(_as_dicts(TRANSACTIONS)):
        store.add_transaction(transaction)
    for label in LABELS:
        store.add_label(*label)
    assert store.evict(T0 + 100 * DAY) == len(TRANSACTIONS)
    assert not store._transactions and not store._reports
    assert not any(store._histories.values())


# --- simulated data: bootstrap from the warehouse, then replay the stream ----------------


@pytest.fixture(scope="module")
def simulated(small_dataset_files, catalog, tmp_path_factory):
    """The small simulated data set in a warehouse with its offline feature view, a cut in the
    last third of the data, and the transactions and labels from the cut on."""
    warehouse = WarehouseResource(database=str(tmp_path_factory.mktemp("online") / "warehouse.duckdb"))
    with warehouse.connect() as con:
        for name, contract in CONTRACTS.items():
            load_file(con, contract, str(small_dataset_files[name]), run_id="test")
        view, offline = _build_offline_view(con, catalog)
        cut = con.execute("SELECT quantile_disc(event_time, 0.75) FROM raw.transactions").fetchone()[0]
        later = _as_dicts(
            con.execute(
                f"SELECT {', '.join(TRANSACTION_COLUMNS)} FROM raw.transactions WHERE event_time >= ?",
                [cut],
            ).fetchall()
        )
        labels = con.execute(
            "SELECT transaction_id, is_fraud, reported_at FROM raw.fraud_labels WHERE reported_at >= ?",
            [cut],
        ).fetchall()
    return warehouse, view, offline, cut, later, labels


def test_online_features_equal_the_offline_view_after_a_bootstrap(simulated):
    warehouse, view, offline, cut, later, labels = simulated
    with warehouse.connect() as con:
        store = OnlineFeatureStore.from_warehouse(con, view, as_of=cut)
    online = _replay(store, later, labels)
    assert len(online) >= 5000
    _assert_parity(online, offline, view)
    # The comparison is not vacuous: frauds reported during the replay move the rates.
    assert sum(is_fraud for _, is_fraud, reported in labels if reported < later[-1]["event_time"]) > 0
    assert (online[_names_of(view, "known_fraud_rate")] > 0).any().any()


def test_daily_eviction_keeps_parity(simulated):
    warehouse, view, offline, cut, later, labels = simulated
    with warehouse.connect() as con:
        store = OnlineFeatureStore.from_warehouse(con, view, as_of=cut)
    evicted: list[int] = []
    online = _replay(store, later, labels, evicted=evicted)
    assert len(evicted) >= 10 and sum(evicted) > 1000
    _assert_parity(online, offline, view)


# --- a feature added in YAML only ---------------------------------------------------------

NEW_CUSTOMER_FEATURES = """
  - name: customer_amount_max_{window}
    function: max
    of: amount
    by: customer_id
    windows: [1d]
  - name: customer_amount_sum_{window}
    function: sum
    of: amount
    by: customer_id
    windows: [1h, 1d]
  - name: customer_terminal_amount_min_{window}
    function: min
    of: amount
    by: [customer_id, terminal_id]
    windows: [1h, 2d]
  - name: customer_terminal_fraud_rate_{window}
    function: known_fraud_rate
    by: [customer_id, terminal_id]
    windows: [3d]
  - name: seconds_since_terminal_previous_tx
    function: seconds_since_previous
    by: terminal_id
"""
NEW_TRANSACTION_FEATURES = """
  - name: tx_is_evening_or_night
    function: is_night
    params: {from_hour: 20, to_hour: 4}
"""


def test_a_feature_added_in_yaml_only_is_served_online(warehouse, tmp_path: Path):
    definitions = tmp_path / "feature_definitions"
    shutil.copytree(REPOSITORY_ROOT / "feature_definitions", definitions)
    for file_name, entries in [
        ("customer_behaviour.yaml", NEW_CUSTOMER_FEATURES),
        ("transaction_features.yaml", NEW_TRANSACTION_FEATURES),
    ]:
        path = definitions / file_name
        path.write_text(path.read_text().rstrip("\n") + "\n" + entries)
    catalog = load_catalog(definitions)
    with warehouse.connect() as con:
        load_handmade(con)
        view, offline = _build_offline_view(con, catalog)
    assert {"customer_amount_max_1d", "tx_is_evening_or_night"} <= set(view.feature_names)
    online = _replay(_handmade_store(view), _as_dicts(TRANSACTIONS), LABELS)
    _assert_parity(online, offline, view)
    assert online.loc["g", "customer_amount_max_1d"] == 60.0  # b..f; a is 1 us too old
