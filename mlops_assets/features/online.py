"""The online feature store: the catalog's features for incoming transactions, a batch at a time.

State model. For every entity the view groups by (a `by` of the catalog: a customer, a
terminal, a customer at a terminal) the store keeps the entity's recent transactions as
arrays sorted by event time (times in integer microseconds since the epoch, plus the
values of the columns that windowed features aggregate), and the event times of those of
its transactions that were reported as fraud, with when each report arrived. Beside them:
the customer and terminal profiles, every transaction id in history (so adding one twice
changes nothing) and every fraud report received (first report per transaction wins, as in
the warehouse; a report may arrive before its transaction). History older than the widest
window is dropped: by `evict` for a transaction's id and for an entity all of whose history
expired, and a few entries at a time from the head of a history that is still in use (no
window reaches them meanwhile). For features whose window is the entity's whole history
(`seconds_since_previous`) the store remembers the latest dropped time per entity.

Parity rule. A feature at time t equals the offline feature view's value
(`mlops_assets/features/offline.py`): windows are `[t - w, t)`, so only events strictly
earlier than t count (ties at t never do, whatever the arrival order), and a fraud report
counts only if it was reported strictly before t. Window bounds are found by bisection in
the sorted times, so transactions that arrive out of order are placed where they belong,
and a batch is recorded first and computed after: each row still sees only what is strictly
earlier than its own transaction. The Python work per transaction is the bisections; the
aggregates are taken over the whole batch at once with numpy.

No feature is named here: each catalog `Feature` is computed by the implementation of its
`function` (`_FUNCTIONS`), so a feature added in YAML alone is served online too.
"""
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from heapq import heappop, heappush
from typing import Any, NamedTuple

import duckdb
import numpy as np

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
_STALE_ENTRIES = 8  # expired entries a history may hold before it drops them

Entity = tuple[str, ...]  # the values of a feature's `by` columns, in `by` order


def _naive_utc(moment: datetime) -> datetime:
    """Times are naive UTC, as in the warehouse; an aware time is converted."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch."""
    return (_naive_utc(moment) - _EPOCH) // _MICROSECOND


def _entity(by: tuple[str, ...], transaction: Mapping[str, Any]) -> Entity:
    return tuple([transaction[column] for column in by])


class _History:
    """One entity's transactions sorted by time, the values of the columns its features
    aggregate, and the fraud reports among them. Compared and hashed by identity."""

    __slots__ = ("by", "entity", "times", "values", "fraud_times", "fraud_reported")

    def __init__(self, by: tuple[str, ...], entity: Entity, columns: Iterable[str]):
        self.by = by  # its key in the store
        self.entity = entity
        self.times: list[int] = []
        # column -> aligned values, as C doubles so that windows are gathered by copying bytes
        self.values: dict[str, array] = {column: array("d") for column in columns}
        self.fraud_times: list[int] = []  # sorted event times of frauds
        self.fraud_reported: list[int] = []  # aligned: when reported

    def add(self, time: int, values: Mapping[str, float]) -> None:
        times = self.times
        if not times or time >= times[-1]:  # in time order, as nearly always
            # (Among equal times order does not matter: a window has all of them or none.)
            times.append(time)
            for column, aligned in self.values.items():
                aligned.append(values[column])
            return
        index = bisect_left(times, time)
        times.insert(index, time)
        for column, aligned in self.values.items():
            aligned.insert(index, values[column])

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


class _ExpiryQueue:
    """Keys by time, taken out oldest first. Keys nearly always come in time order: those
    wait in a queue (constant time each way); only the few that come late go to a heap."""

    def __init__(self) -> None:
        self._in_order: deque[tuple[int, str]] = deque()
        self._late: list[tuple[int, str]] = []

    def push(self, time: int, key: str) -> None:
        if not self._in_order or time >= self._in_order[-1][0]:
            self._in_order.append((time, key))
        else:
            heappush(self._late, (time, key))

    def pop_before(self, time: int) -> Iterator[str]:
        """Takes out and yields the keys of times before `time`."""
        while self._in_order and self._in_order[0][0] < time:
            yield self._in_order.popleft()[1]
        while self._late and self._late[0][0] < time:
            yield heappop(self._late)[1]


class _Recorded(NamedTuple):  # a tuple: one is made per transaction, on the hot path
    """A transaction in history: enough to attach a fraud report that arrives later, and to
    find the histories it leaves when it expires."""

    time: int
    histories: tuple[_History, ...]  # one per grouping


@dataclass(frozen=True)
class _Spec:
    """A catalog feature compiled for the store: its implementation, and the batch slots it
    reads (its entity, its window's bounds, its window's `of` values), which features with
    the same `by`, window and `of` share."""

    feature: Feature
    function: Callable[["_Spec", "_Batch"], np.ndarray]
    params: dict[str, Any]
    grouping: int | None  # index into `_Batch.histories`; None for a feature without `by`
    window: int | None  # index into `_Batch.windows`; None for a feature without `by`
    values: int | None  # index into the batch's value slots; None for a feature without `of`


class _Batch:
    """Transactions whose features are computed together, from the store as it is.

    The Python work per transaction is each (by, window) bound the view uses, one bisection
    each; the aggregates are then taken over the whole batch at once with numpy, on each
    window's values laid end to end. Value slots and means are taken on demand and shared by
    the features that read the same window and column."""

    def __init__(
        self,
        store: "OnlineFeatureStore",
        transactions: Sequence[Mapping[str, Any]],
        times: list[int],
        histories: list[tuple["_History | None", ...]],
    ):
        """`times`: the transactions' times; `histories`: each one's entities' histories
        (None: no history yet), in the store's grouping order."""
        self.store = store
        self.transactions = transactions
        self.time_list = times
        self.times = np.array(times, dtype=np.int64)
        # Per grouping: each transaction's history.
        self.histories: list[list[_History | None]] = [list(column) for column in zip(*histories)] or [
            [] for _ in store._groupings
        ]
        ends = [
            [bisect_left(h.times, t) if h else 0 for h, t in zip(grouping, times)] for grouping in self.histories
        ]
        # Per (by, window): each transaction's window as [start, end) indexes into its history.
        self.windows: list[tuple[list[int], list[int]]] = []
        for grouping, micros in store._windows:
            histories, window_ends = self.histories[grouping], ends[grouping]
            if micros is None:
                starts = [0] * len(transactions)
            else:
                starts = [
                    bisect_left(h.times, t - micros, 0, end) if h else 0
                    for h, t, end in zip(histories, self.time_list, window_ends)
                ]
            self.windows.append((starts, window_ends))
        self._counts: list[np.ndarray | None] = [None] * len(store._windows)
        self._values: list[tuple[np.ndarray, np.ndarray] | None] = [None] * store._value_slots
        self._means: list[np.ndarray | None] = [None] * store._value_slots
        self._columns: dict[str, np.ndarray] = {}

    def matrix(self) -> np.ndarray:
        """The batch's features: a row per transaction, a column per feature of the view."""
        if not self.transactions:
            return np.empty((0, len(self.store._specs)))
        return np.column_stack([spec.function(spec, self) for spec in self.store._specs])

    def window_starts(self, spec: _Spec) -> list[int]:
        """`t - w` (inclusive) per transaction; the beginning of time for whole-history features."""
        if spec.feature.window_seconds is None:
            return [-1 << 63] * len(self.time_list)
        micros = spec.feature.window_seconds * _MICROS_PER_SECOND
        return [t - micros for t in self.time_list]

    def counts(self, spec: _Spec) -> np.ndarray:
        """The number of the entity's events in each transaction's window."""
        counts = self._counts[spec.window]
        if counts is None:
            starts, ends = self.windows[spec.window]
            counts = self._counts[spec.window] = np.array(ends, dtype=np.int64) - np.array(starts, dtype=np.int64)
        return counts

    def values(self, spec: _Spec) -> tuple[np.ndarray, np.ndarray]:
        """The `of` values of every transaction's window laid end to end, and where each
        window's values begin in them."""
        slot = self._values[spec.values]
        if slot is None:
            starts, ends = self.windows[spec.window]
            column = spec.feature.of
            laid = b"".join(
                [
                    history.values[column][start:end]
                    for history, start, end in zip(self.histories[spec.grouping], starts, ends)
                    if end > start
                ]
            )
            counts = self.counts(spec)
            offsets = np.zeros(len(counts), dtype=np.int64)
            np.cumsum(counts[:-1], out=offsets[1:])
            slot = self._values[spec.values] = (np.frombuffer(laid, dtype=float), offsets)
        return slot

    def sums(self, spec: _Spec, laid: np.ndarray) -> np.ndarray:
        """The sum of each window's share of `laid` (laid out as `values(spec)`); 0 if empty."""
        _, offsets = self.values(spec)
        # A 0 after the end keeps every offset a valid index, even of trailing empty windows;
        # reduceat gives an empty window the value at its offset, hence the `where`.
        sums = np.add.reduceat(np.append(laid, 0.0), offsets)
        return np.where(self.counts(spec) > 0, sums, 0.0)

    def mean(self, spec: _Spec) -> np.ndarray:
        """The mean of each window's values, NaN for an empty window."""
        mean = self._means[spec.values]
        if mean is None:
            laid, _ = self.values(spec)
            with np.errstate(invalid="ignore"):
                mean = self._means[spec.values] = self.sums(spec, laid) / self.counts(spec)
        return mean

    def extreme(self, spec: _Spec, reduce: np.ufunc) -> np.ndarray:
        """`reduce` (np.minimum or np.maximum) of each window's values, NaN for an empty window."""
        laid, offsets = self.values(spec)
        counts = self.counts(spec)
        if not laid.size:
            return np.full(len(counts), NAN)
        # The last value again after the end: a valid index for trailing empty windows, and
        # no change to the last window's extreme.
        return np.where(counts > 0, reduce.reduceat(np.append(laid, laid[-1]), offsets), NAN)

    def column(self, name: str) -> np.ndarray:
        """A column of the transactions themselves (read once, whichever features use it)."""
        column = self._columns.get(name)
        if column is None:
            column = self._columns[name] = np.array([float(t[name]) for t in self.transactions])
        return column

    def hours(self) -> np.ndarray:
        return (self.times // (3600 * _MICROS_PER_SECOND)) % 24


# --- One implementation per catalog function: a column of values for a batch -------------


def _value(spec: _Spec, batch: _Batch) -> np.ndarray:
    return batch.column(spec.feature.of)


def _hour_of_day(spec: _Spec, batch: _Batch) -> np.ndarray:
    return batch.hours().astype(float)


def _is_weekend(spec: _Spec, batch: _Batch) -> np.ndarray:
    weekday = (batch.times // (86_400 * _MICROS_PER_SECOND) + _EPOCH.weekday()) % 7
    return np.isin(weekday, (_SATURDAY, _SUNDAY)).astype(float)


def _is_night(spec: _Spec, batch: _Batch) -> np.ndarray:
    start, end, hour = spec.params["from_hour"], spec.params["to_hour"], batch.hours()
    if start < end:
        return ((start <= hour) & (hour < end)).astype(float)
    return ((hour >= start) | (hour < end)).astype(float)  # a night that wraps midnight


def _distance_from_home_km(spec: _Spec, batch: _Batch) -> np.ndarray:
    missing = (NAN, NAN)
    customers, terminals = batch.store._customers, batch.store._terminals
    home_lat, home_lon = np.radians(
        np.array([customers.get(t["customer_id"], missing) for t in batch.transactions], dtype=float).reshape(-1, 2).T
    )
    lat, lon = np.radians(
        np.array([terminals.get(t["terminal_id"], missing) for t in batch.transactions], dtype=float).reshape(-1, 2).T
    )
    a = np.sin((lat - home_lat) / 2) ** 2 + np.cos(home_lat) * np.cos(lat) * np.sin((lon - home_lon) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a))


def _seconds_since_previous(spec: _Spec, batch: _Batch) -> np.ndarray:
    _, ends = batch.windows[spec.window]
    by = spec.feature.by
    dropped = batch.store._latest_dropped[by]
    seconds = []
    for transaction, history, end, time in zip(batch.transactions, batch.histories[spec.grouping], ends, batch.time_list):
        latest = history.times[end - 1] if end else None
        earlier = dropped.get(history.entity if history else _entity(by, transaction))
        if earlier is not None and earlier < time and (latest is None or earlier > latest):
            latest = earlier
        seconds.append(NAN if latest is None else (time - latest) / 1e6)
    return np.array(seconds)


def _count(spec: _Spec, batch: _Batch) -> np.ndarray:
    return batch.counts(spec).astype(float)


def _sum(spec: _Spec, batch: _Batch) -> np.ndarray:
    laid, _ = batch.values(spec)
    return batch.sums(spec, laid)


def _mean(spec: _Spec, batch: _Batch) -> np.ndarray:
    return batch.mean(spec)


def _stddev(spec: _Spec, batch: _Batch) -> np.ndarray:
    laid, _ = batch.values(spec)
    counts = batch.counts(spec)
    # Two passes (mean, then squared deviations), not running sums of squares: those cancel
    # badly when the amounts are large next to their spread, and parity is to 1e-9.
    deviations = laid - np.repeat(batch.mean(spec), counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = batch.sums(spec, deviations * deviations) / (counts - 1)
    return np.where(counts >= 2, np.sqrt(variance), NAN)


def _min(spec: _Spec, batch: _Batch) -> np.ndarray:
    return batch.extreme(spec, np.minimum)


def _max(spec: _Spec, batch: _Batch) -> np.ndarray:
    return batch.extreme(spec, np.maximum)


def _ratio_to_mean(spec: _Spec, batch: _Batch) -> np.ndarray:
    mean = batch.mean(spec)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean == 0, NAN, batch.column(spec.feature.of) / mean)


def _known_fraud_rate(spec: _Spec, batch: _Batch) -> np.ndarray:
    known = []
    for history, start, time in zip(batch.histories[spec.grouping], batch.window_starts(spec), batch.time_list):
        if history is None or not history.fraud_times:
            known.append(0)
            continue
        first = bisect_left(history.fraud_times, start)
        last = bisect_left(history.fraud_times, time, first)
        known.append(sum(1 for reported in history.fraud_reported[first:last] if reported < time))
    counts = batch.counts(spec)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.array(known) / counts, NAN)


_FUNCTIONS: dict[str, Callable[[_Spec, _Batch], np.ndarray]] = {
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
        self._names = view.feature_names
        unknown = sorted({f.function for f in self._features} - set(_FUNCTIONS))
        if unknown:
            raise ValueError(f"no online implementation of feature function(s) {unknown}")
        bys = sorted({feature.by for feature in self._features if feature.by})
        self._groupings = bys
        # The distinct (grouping, window) and (window, column) pairs: each is computed once
        # per transaction, whichever features read it.
        windows = list(dict.fromkeys((f.by, f.window_seconds) for f in self._features if f.by))
        self._windows = [
            (bys.index(by), None if seconds is None else seconds * _MICROS_PER_SECOND) for by, seconds in windows
        ]
        value_slots = list(dict.fromkeys((f.by, f.window_seconds, f.of) for f in self._features if f.by and f.of))
        self._value_slots = len(value_slots)
        self._specs = tuple(
            _Spec(
                feature,
                _FUNCTIONS[feature.function],
                dict(feature.params),
                bys.index(feature.by) if feature.by else None,
                windows.index((feature.by, feature.window_seconds)) if feature.by else None,
                value_slots.index((feature.by, feature.window_seconds, feature.of)) if feature.by and feature.of else None,
            )
            for feature in self._features
        )
        self._widest = max(
            (feature.window_seconds for feature in self._features if feature.window_seconds), default=0
        ) * _MICROS_PER_SECOND
        # Columns aggregated over windows, stored per event: by each grouping, its own.
        self._columns_of = {by: sorted({f.of for f in self._features if f.by == by and f.of}) for by in bys}
        self._columns = sorted({column for columns in self._columns_of.values() for column in columns})
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
        # Transaction ids by event time and by report time, so that eviction visits only
        # what expires, not all state.
        self._expiring_transactions = _ExpiryQueue()
        self._expiring_reports = _ExpiryQueue()
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

    def features(self, transaction: Mapping[str, Any]) -> dict[str, float]:
        """Every feature of the view for `transaction`, in `view.feature_names` order, from
        the history strictly before its time; a missing value is NaN. Records nothing."""
        histories = tuple(self._histories[by].get(_entity(by, transaction)) for by in self._groupings)
        batch = _Batch(self, [transaction], [_micros(transaction["event_time"])], [histories])
        return dict(zip(self._names, batch.matrix()[0].tolist()))

    def add_transaction(self, transaction: Mapping[str, Any]) -> None:
        """Records `transaction` in history; a transaction id already recorded is ignored."""
        self._record(transaction["transaction_id"], _micros(transaction["event_time"]), transaction)

    def add_transactions(self, transactions: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Records a batch in history and returns its feature matrix: a row per transaction,
        in `view.feature_names` order. Each row is `features()` of its transaction from the
        history strictly before its time, the batch's earlier transactions included, so the
        batch gives what scoring its transactions one at a time in time order would."""
        times = [_micros(transaction["event_time"]) for transaction in transactions]
        histories = [
            self._record(transaction["transaction_id"], time, transaction)
            for transaction, time in zip(transactions, times)
        ]
        return _Batch(self, transactions, times, histories).matrix()

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
        dropped = 0
        for tid in self._expiring_transactions.pop_before(horizon):
            for history in self._transactions.pop(tid).histories:
                if history.times[-1] < horizon:  # all of it expired: the entity goes
                    self._drop(history)
            dropped += 1
            report = self._reports.get(tid)
            if report is not None and report[1] < horizon:
                del self._reports[tid]
        # A report is kept while its transaction is in history or it is itself recent.
        for tid in self._expiring_reports.pop_before(horizon):
            if tid not in self._transactions:
                self._reports.pop(tid, None)
        return dropped

    # --- internals ------------------------------------------------------------------------

    def _record(
        self, transaction_id: str, time: int, transaction: Mapping[str, Any]
    ) -> tuple[_History | None, ...]:
        """Records a transaction; returns its entities' histories (None: it has none)."""
        recorded = self._transactions.get(transaction_id)
        if recorded is not None:
            return recorded.histories
        entities = [(by, _entity(by, transaction)) for by in self._groupings]
        horizon = self._horizon
        if horizon is not None and time < horizon:
            # Already out of every window; only the whole-history features can tell.
            for by, entity in entities:
                if by in self._whole_history_bys:
                    self._remember_dropped(by, entity, time)
            return tuple(self._histories[by].get(entity) for by, entity in entities)
        values = {column: float(transaction[column]) for column in self._columns}
        histories = []
        for by, entity in entities:
            history = self._histories[by].get(entity)
            if history is None:
                history = self._histories[by][entity] = _History(by, entity, self._columns_of[by])
            history.add(time, values)
            if horizon is not None and len(history.times) > _STALE_ENTRIES and history.times[_STALE_ENTRIES - 1] < horizon:
                self._trim(history)
            histories.append(history)
        recorded = self._transactions[transaction_id] = _Recorded(time, tuple(histories))
        self._expiring_transactions.push(time, transaction_id)
        report = self._reports.get(transaction_id)
        if report is not None and report[0] == 1:
            self._attach_fraud(recorded, report[1])
        return recorded.histories

    def _report(self, transaction_id: str, is_fraud: int, reported: int) -> None:
        if transaction_id in self._reports:
            return
        self._reports[transaction_id] = (is_fraud, reported)
        self._expiring_reports.push(reported, transaction_id)
        recorded = self._transactions.get(transaction_id)
        if is_fraud == 1 and recorded is not None:
            self._attach_fraud(recorded, reported)

    def _attach_fraud(self, recorded: _Recorded, reported: int) -> None:
        for history in recorded.histories:
            history.add_fraud(recorded.time, reported)

    def _drop(self, history: _History) -> None:
        """Forgets an entity's history, keeping its latest time if a feature needs it."""
        table = self._histories[history.by]
        if table.get(history.entity) is history:  # not already replaced by a newer history
            del table[history.entity]
            if history.by in self._whole_history_bys:
                self._remember_dropped(history.by, history.entity, history.times[-1])

    def _trim(self, history: _History) -> None:
        """Drops the expired head of a history. `_record` calls it once the head is
        `_STALE_ENTRIES` long: one call per that many entries instead of one per entry. Until
        then the entries stay, unread: every window starts after the horizon."""
        latest = history.drop_before(self._horizon)
        if latest is not None and history.by in self._whole_history_bys:
            self._remember_dropped(history.by, history.entity, latest)

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
