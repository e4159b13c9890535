"""The online feature store: the catalog's features for one incoming transaction at a time.

State model. For every entity the view groups by (a `by` of the catalog: a customer, a
terminal, a customer at a terminal) the store keeps the entity's recent transactions as
arrays sorted by event time (times in integer microseconds since the epoch, plus the
values of the columns that windowed features aggregate), and the event times of those of
its transactions that were reported as fraud, with when each report arrived. Beside them:
the customer and terminal profiles, every transaction id in history (so adding one twice
changes nothing) and every fraud report received (first report per transaction wins, as in
the warehouse; a report may arrive before its transaction). History older than the widest
window is dropped by `evict`; for features whose window is the entity's whole history
(`seconds_since_previous`) the store remembers the latest dropped time per entity.

Parity rule. A feature at time t equals the offline feature view's value
(`mlops_assets/features/offline.py`): windows are `[t - w, t)`, so only events strictly
earlier than t count (ties at t never do, whatever the arrival order), and a fraud report
counts only if it was reported strictly before t. Window bounds are found by bisection in
the sorted times, so transactions that arrive out of order are placed where they belong.
No feature is named here: each catalog `Feature` is computed by the implementation of its
`function` (`_FUNCTIONS`), so a feature added in YAML alone is served online too.
"""
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb

from mlops_assets.features.catalog import Feature, FeatureView
from mlops_assets.features.offline import (
    CUSTOMERS,
    EARTH_RADIUS_KM,
    FRAUD_LABELS,
    TERMINALS,
    TRANSACTIONS,
)

NAN = float("nan")
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_MICROS_PER_SECOND = 1_000_000
_SATURDAY, _SUNDAY = 5, 6  # datetime.weekday()

Entity = tuple[str, ...]  # the values of a feature's `by` columns, in `by` order


def _naive_utc(moment: datetime) -> datetime:
    """Times are naive UTC, as in the warehouse; an aware time is converted."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch."""
    return (_naive_utc(moment) - _EPOCH) // _MICROSECOND


@dataclass
class _History:
    """One entity's transactions sorted by time, and the fraud reports among them."""

    times: list[int] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)  # column -> aligned values
    fraud_times: list[int] = field(default_factory=list)  # sorted event times of frauds
    fraud_reported: list[int] = field(default_factory=list)  # aligned: when reported

    def add(self, time: int, values: dict[str, float]) -> None:
        index = bisect_left(self.times, time)
        self.times.insert(index, time)
        for column, value in values.items():
            self.values.setdefault(column, []).insert(index, value)

    def add_fraud(self, time: int, reported: int) -> None:
        index = bisect_left(self.fraud_times, time)
        self.fraud_times.insert(index, time)
        self.fraud_reported.insert(index, reported)

    def drop_before(self, time: int) -> int | None:
        """Drops everything older than `time`; returns the latest dropped time, if any."""
        dropped = bisect_left(self.times, time)
        latest = self.times[dropped - 1] if dropped else None
        del self.times[:dropped]
        for values in self.values.values():
            del values[:dropped]
        frauds = bisect_left(self.fraud_times, time)
        del self.fraud_times[:frauds]
        del self.fraud_reported[:frauds]
        return latest


@dataclass(frozen=True)
class _Recorded:
    """A transaction in history: enough to attach a fraud report that arrives later."""

    time: int
    entities: tuple[tuple[tuple[str, ...], Entity], ...]  # (by, entity) per grouping


class _Query:
    """One transaction being scored: its time, and the window bounds computed so far."""

    def __init__(self, store: "OnlineFeatureStore", transaction: Mapping[str, Any]):
        self.store = store
        self.transaction = transaction
        self.moment = _naive_utc(transaction["event_time"])
        self.time = (self.moment - _EPOCH) // _MICROSECOND
        self._bounds: dict[tuple[tuple[str, ...], int | None], tuple[_History | None, int, int]] = {}
        self._values: dict[tuple[tuple[str, ...], int | None, str], list[float]] = {}

    def entity(self, by: tuple[str, ...]) -> Entity:
        return tuple(self.transaction[column] for column in by)

    def window_start(self, feature: Feature) -> int:
        """`t - w` (inclusive); the beginning of time for whole-history features."""
        if feature.window_seconds is None:
            return -1 << 63
        return self.time - feature.window_seconds * _MICROS_PER_SECOND

    def bounds(self, feature: Feature) -> tuple[_History | None, int, int]:
        """The entity's history and the index range of its events in `[t - w, t)`."""
        key = (feature.by, feature.window_seconds)
        if key not in self._bounds:
            history = self.store._histories[feature.by].get(self.entity(feature.by))
            if history is None:
                self._bounds[key] = (None, 0, 0)
            else:
                end = bisect_left(history.times, self.time)
                start = bisect_left(history.times, self.window_start(feature), 0, end)
                self._bounds[key] = (history, start, end)
        return self._bounds[key]

    def values(self, feature: Feature) -> list[float]:
        """The `of` values of the entity's events in the feature's window."""
        key = (feature.by, feature.window_seconds, feature.of)
        if key not in self._values:
            history, start, end = self.bounds(feature)
            self._values[key] = history.values[feature.of][start:end] if history else []
        return self._values[key]


# --- One implementation per catalog function -------------------------------------------


def _value(feature: Feature, query: _Query) -> float:
    return float(query.transaction[feature.of])


def _hour_of_day(feature: Feature, query: _Query) -> float:
    return float(query.moment.hour)


def _is_weekend(feature: Feature, query: _Query) -> float:
    return float(query.moment.weekday() in (_SATURDAY, _SUNDAY))


def _is_night(feature: Feature, query: _Query) -> float:
    start, end, hour = feature.param("from_hour"), feature.param("to_hour"), query.moment.hour
    if start < end:
        return float(start <= hour < end)
    return float(hour >= start or hour < end)  # a night that wraps midnight


def _distance_from_home_km(feature: Feature, query: _Query) -> float:
    home = query.store._customers.get(query.transaction["customer_id"])
    terminal = query.store._terminals.get(query.transaction["terminal_id"])
    if home is None or terminal is None:
        return NAN
    (home_lat, home_lon), (lat, lon) = home, terminal
    a = math.sin(math.radians(lat - home_lat) / 2) ** 2 + math.cos(math.radians(home_lat)) * math.cos(
        math.radians(lat)
    ) * math.sin(math.radians(lon - home_lon) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def _seconds_since_previous(feature: Feature, query: _Query) -> float:
    history, _, end = query.bounds(feature)
    latest = history.times[end - 1] if history and end else None
    dropped = query.store._latest_dropped[feature.by].get(query.entity(feature.by))
    if dropped is not None and dropped < query.time and (latest is None or dropped > latest):
        latest = dropped
    return NAN if latest is None else (query.time - latest) / 1e6


def _count(feature: Feature, query: _Query) -> float:
    _, start, end = query.bounds(feature)
    return float(end - start)


def _sum(feature: Feature, query: _Query) -> float:
    return float(sum(query.values(feature)))


def _mean(feature: Feature, query: _Query) -> float:
    values = query.values(feature)
    return sum(values) / len(values) if values else NAN


def _stddev(feature: Feature, query: _Query) -> float:
    values = query.values(feature)
    if len(values) < 2:
        return NAN
    mean = sum(values) / len(values)
    return math.sqrt(sum([(value - mean) ** 2 for value in values]) / (len(values) - 1))


def _min(feature: Feature, query: _Query) -> float:
    values = query.values(feature)
    return min(values) if values else NAN


def _max(feature: Feature, query: _Query) -> float:
    values = query.values(feature)
    return max(values) if values else NAN


def _ratio_to_mean(feature: Feature, query: _Query) -> float:
    mean = _mean(feature, query)
    return NAN if mean == 0 else float(query.transaction[feature.of]) / mean


def _known_fraud_rate(feature: Feature, query: _Query) -> float:
    history, start, end = query.bounds(feature)
    if end == start:
        return NAN
    first = bisect_left(history.fraud_times, query.window_start(feature))
    last = bisect_left(history.fraud_times, query.time, first)
    known = sum(1 for reported in history.fraud_reported[first:last] if reported < query.time)
    return known / (end - start)


_FUNCTIONS: dict[str, Callable[[Feature, _Query], float]] = {
    "value": _value,
    "hour_of_day": _hour_of_day,
    "is_weekend": _is_weekend,
    "is_night": _is_night,
    "distance_from_home_km": _distance_from_home_km,
    "seconds_since_previous": _seconds_since_previous,
    "count": _count,
    "sum": _sum,
    "mean": _mean,
    "stddev": _stddev,
    "min": _min,
    "max": _max,
    "ratio_to_mean": _ratio_to_mean,
    "known_fraud_rate": _known_fraud_rate,
}


class OnlineFeatureStore:
    """State of the entities' recent history, updated from the stream."""

    def __init__(
        self,
        view: FeatureView,
        customers: dict[str, tuple[float, float]],
        terminals: dict[str, tuple[float, float]],
    ):
        self.view = view
        self._features = tuple(feature for _, chosen in view.features for feature in chosen)
        unknown = sorted({f.function for f in self._features} - set(_FUNCTIONS))
        if unknown:
            raise ValueError(f"no online implementation of feature function(s) {unknown}")
        self._calls = tuple(
            (feature.name, _FUNCTIONS[feature.function], feature) for feature in self._features
        )
        bys = sorted({feature.by for feature in self._features if feature.by})
        self._widest = max(
            (feature.window_seconds for feature in self._features if feature.window_seconds), default=0
        ) * _MICROS_PER_SECOND
        # Columns aggregated over windows, stored per event.
        self._columns = sorted({f.of for f in self._features if f.by and f.of})
        self._customers = dict(customers)
        self._terminals = dict(terminals)
        self._histories: dict[tuple[str, ...], dict[Entity, _History]] = {by: {} for by in bys}
        self._whole_history_bys = {f.by for f in self._features if f.by and f.window_seconds is None}
        # Latest time dropped from each entity's history, for whole-history features.
        self._latest_dropped: dict[tuple[str, ...], dict[Entity, int]] = {
            by: {} for by in self._whole_history_bys
        }
        self._transactions: dict[str, _Recorded] = {}
        self._reports: dict[str, tuple[int, int]] = {}  # transaction_id -> (is_fraud, reported)
        self._horizon: int | None = None  # history before it has been dropped

    @classmethod
    def from_warehouse(
        cls, con: duckdb.DuckDBPyConnection, view: FeatureView, as_of: datetime | None = None
    ) -> "OnlineFeatureStore":
        """The store as of `as_of` (default: the latest transaction): profiles, the
        transactions of the widest window before it, fraud reports made before it."""
        inputs = {name for group in view.groups for name in group.inputs}
        customers: dict[str, tuple[float, float]] = {}
        terminals: dict[str, tuple[float, float]] = {}
        if "customers" in inputs:
            customers = _profiles(con, f"SELECT customer_id, home_lat, home_lon FROM {CUSTOMERS}")
            terminals = _profiles(con, f"SELECT terminal_id, lat, lon FROM {TERMINALS}")
        store = cls(view, customers, terminals)
        end = as_of
        if end is None:
            end = con.execute(f"SELECT max(event_time) FROM {TRANSACTIONS}").fetchone()[0]
        if end is None:  # no transactions at all
            return store
        start = end - timedelta(microseconds=store._widest)
        store._load_history(con, start, as_of)
        store._horizon = _micros(start)
        if "fraud_labels" in inputs:
            store._load_reports(con, start, as_of)
        return store

    def features(self, transaction: dict) -> dict[str, float]:
        """Every feature of the view for `transaction`, in `view.feature_names` order, from
        the history strictly before its time; a missing value is NaN."""
        query = _Query(self, transaction)
        return {name: function(feature, query) for name, function, feature in self._calls}

    def add_transaction(self, transaction: dict) -> None:
        """Records `transaction` in history; a transaction id already recorded is ignored."""
        self._record(transaction["transaction_id"], _micros(transaction["event_time"]), transaction)

    def add_label(self, transaction_id: str, is_fraud: int, reported_at: datetime) -> None:
        """A fraud report (or a cleared dispute, is_fraud=0); the first one per id counts."""
        self._report(transaction_id, int(is_fraud), _micros(reported_at))

    def add_customer(self, customer_id: str, home_lat: float, home_lon: float) -> None:
        self._customers[customer_id] = (home_lat, home_lon)

    def add_terminal(self, terminal_id: str, lat: float, lon: float) -> None:
        self._terminals[terminal_id] = (lat, lon)

    def evict(self, now: datetime) -> int:
        """Drops history older than the widest window before `now` (no transaction at or
        after `now` can see it) and returns the number of transactions dropped."""
        horizon = _micros(now) - self._widest
        if self._horizon is not None and horizon <= self._horizon:
            return 0
        self._horizon = horizon
        for by, histories in self._histories.items():
            for entity in list(histories):
                latest = histories[entity].drop_before(horizon)
                if latest is not None and by in self._whole_history_bys:
                    self._remember_dropped(by, entity, latest)
                if not histories[entity].times:
                    del histories[entity]
        old = [tid for tid, recorded in self._transactions.items() if recorded.time < horizon]
        for tid in old:
            del self._transactions[tid]
        self._reports = {
            tid: report
            for tid, report in self._reports.items()
            if tid in self._transactions or report[1] >= horizon
        }
        return len(old)

    # --- internals ------------------------------------------------------------------------

    def _record(self, transaction_id: str, time: int, transaction: Mapping[str, Any]) -> None:
        if transaction_id in self._transactions:
            return
        entities = tuple((by, tuple(transaction[column] for column in by)) for by in self._histories)
        if self._horizon is not None and time < self._horizon:
            # Already out of every window; only the whole-history features can tell.
            for by, entity in entities:
                if by in self._whole_history_bys:
                    self._remember_dropped(by, entity, time)
            return
        values = {column: float(transaction[column]) for column in self._columns}
        for by, entity in entities:
            history = self._histories[by].get(entity)
            if history is None:
                history = self._histories[by][entity] = _History()
            history.add(time, values)
        self._transactions[transaction_id] = _Recorded(time, entities)
        report = self._reports.get(transaction_id)
        if report is not None and report[0] == 1:
            self._attach_fraud(self._transactions[transaction_id], report[1])

    def _report(self, transaction_id: str, is_fraud: int, reported: int) -> None:
        if transaction_id in self._reports:
            return
        self._reports[transaction_id] = (is_fraud, reported)
        recorded = self._transactions.get(transaction_id)
        if is_fraud == 1 and recorded is not None:
            self._attach_fraud(recorded, reported)

    def _attach_fraud(self, recorded: _Recorded, reported: int) -> None:
        for by, entity in recorded.entities:
            self._histories[by][entity].add_fraud(recorded.time, reported)

    def _remember_dropped(self, by: tuple[str, ...], entity: Entity, time: int) -> None:
        dropped = self._latest_dropped[by]
        if dropped.get(entity, time) <= time:
            dropped[entity] = time

    def _load_history(self, con: duckdb.DuckDBPyConnection, start: datetime, end: datetime | None) -> None:
        """Bulk-loads the transactions in `[start, end)` (`end` None: up to the latest), and
        the latest time before `start` of each entity that whole-history features group by."""
        entity_columns = sorted({column for by in self._histories for column in by})
        columns = ["transaction_id", *entity_columns, *self._columns]
        before_end = "" if end is None else " AND event_time < $end"
        parameters = {"start": start} | ({} if end is None else {"end": end})
        rows = con.execute(
            f"SELECT epoch_us(event_time), {', '.join(columns)} FROM {TRANSACTIONS} "
            f"WHERE event_time >= $start{before_end} ORDER BY event_time, transaction_id",
            parameters,
        ).fetchall()
        for row in rows:
            self._record(row[1], row[0], dict(zip(columns, row[1:])))
        for by in self._whole_history_bys:
            latest = con.execute(
                f"SELECT {', '.join(by)}, epoch_us(max(event_time)) FROM {TRANSACTIONS} "
                f"WHERE event_time < $start GROUP BY ALL",
                {"start": start},
            ).fetchall()
            self._latest_dropped[by].update((tuple(row[:-1]), row[-1]) for row in latest)

    def _load_reports(self, con: duckdb.DuckDBPyConnection, start: datetime, end: datetime | None) -> None:
        """Bulk-loads the fraud reports made before `end` about transactions from `start` on
        (or about transactions not seen yet)."""
        before_end = "" if end is None else "l.reported_at < $end AND "
        parameters = {"start": start} | ({} if end is None else {"end": end})
        reports: Iterable[tuple[str, int, int]] = con.execute(
            f"SELECT l.transaction_id, l.is_fraud, epoch_us(l.reported_at) FROM {FRAUD_LABELS} AS l "
            f"LEFT JOIN {TRANSACTIONS} AS t USING (transaction_id) "
            f"WHERE {before_end}coalesce(t.event_time, l.reported_at) >= $start "
            "ORDER BY l.reported_at, l.transaction_id",
            parameters,
        ).fetchall()
        for transaction_id, is_fraud, reported in reports:
            self._report(transaction_id, is_fraud, reported)


def _profiles(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, tuple[float, float]]:
    """id -> (latitude, longitude) from a query of three columns."""
    return {row[0]: (row[1], row[2]) for row in con.execute(sql).fetchall()}
