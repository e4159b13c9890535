"""Payment-gateway simulator: synthetic card transactions with labelled fraud.

The model, in the order the simulation builds it:

1. Geography. Customers live around a handful of European cities (eurozone,
   currency EUR). Terminals (merchants) sit around the same cities, plus a few
   abroad (London in GBP, New York in USD) that only fraudsters use. Positions
   are the city centre plus gaussian noise of 0.1-0.3 degrees.
2. Customers. Each has a home position and spending habits: a typical amount
   (lognormal, 10-150), how much amounts vary around it, and how many
   transactions they make per day (0.5-4). A customer shops at the ~20
   terminals nearest to home, favouring the nearest ones.
3. Terminals. Each has a merchant category; the category scales amounts
   (electronics and travel cost more than a pharmacy visit).
4. Genuine transactions. Per customer and day the number of payments is
   Poisson with the customer's rate times a weekday factor (busy Saturdays,
   quiet Sundays). The hour follows a daily rhythm (quiet nights, peaks at
   lunch and in the evening); the rest of the time stamp is uniform down to
   the microsecond, so exact ties are rare.
5. Fraud, four scenarios (names in ``FRAUD_SCENARIOS``):
   - compromised_terminal: a few terminals per month are skimmed for 14-28
     days; 30-60 % of their genuine-looking payments in that window are fraud.
   - stolen_card: for 1-7 days a stolen card pays 3-8x the owner's usual
     amount at terminals the owner never uses.
   - card_testing: 5-20 tiny online payments (0.50-3.00) within minutes,
     usually followed by one large payment at the same online shop.
   - impossible_travel: a payment in a city hundreds of kilometres from home
     within an hour of a genuine payment near home.
   Event rates are per terminal-month, customer-day or transaction, so the
   overall fraud rate (about 0.5 %) does not depend on the size of the run.
6. Drift, on demand (``SimulationConfig.drift``): from ``drift_start`` on the world
   changes. ``spending_shift``: customers pay 60 % more per payment and make 50 %
   more payments; ``new_fraud_pattern``: account takeover, a fraudster who has
   the customer's credentials pays 1-2x the usual amount at the customer's own
   usual terminals, at any hour, for 1-3 days: nothing like the four everyday
   scenarios, so a model trained before it misses it. Drift draws from a random
   generator of its own, so everything before ``drift_start`` is exactly the
   data of the same configuration without drift: a control.
7. Labels. Every fraudulent transaction is eventually reported (is_fraud=1)
   after a lognormal delay (median one week, clipped to 1-60 days). A few
   genuine transactions are disputed and cleared (is_fraud=0). Reports can
   arrive after the simulated period, as they would in reality.

All times are naive UTC. Everything is vectorised with numpy and driven by a
single ``numpy.random.default_rng(seed)``, so a configuration always yields
exactly the same dataset.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

__all__ = [
    "DRIFTS", "DRIFT_FRAUD_SCENARIO", "FRAUD_SCENARIOS", "SimulatedDataset", "SimulationConfig", "simulate",
    "write_dataset",
]

FRAUD_SCENARIOS = ("compromised_terminal", "stolen_card", "card_testing", "impossible_travel")
DRIFT_FRAUD_SCENARIO = "account_takeover"  # appears only with the new_fraud_pattern drift
DRIFTS = ("spending_shift", "new_fraud_pattern")

# Scenario codes inside the simulation: 0 is genuine, i + 1 is FRAUD_SCENARIOS[i], then drift's.
_GENUINE = 0
_COMPROMISED_TERMINAL, _STOLEN_CARD, _CARD_TESTING, _IMPOSSIBLE_TRAVEL = 1, 2, 3, 4
_ACCOUNT_TAKEOVER = 5
_SCENARIO_NAMES = ("genuine", *FRAUD_SCENARIOS, DRIFT_FRAUD_SCENARIO)

_SECOND_US = 1_000_000
_MINUTE_US = 60 * _SECOND_US
_HOUR_US = 60 * _MINUTE_US
_DAY_US = 24 * _HOUR_US

_Progress = Callable[[str], None]


# --- Model parameters --------------------------------------------------------


@dataclass(frozen=True)
class _City:
    name: str
    lat: float
    lon: float
    spread_deg: float  # standard deviation of positions around the centre
    weight: float  # relative share of customers and terminals
    currency: str
    home: bool  # customers live here; False for fraud-only foreign cities


_CITIES = (
    _City("Paris", 48.8566, 2.3522, 0.25, 0.22, "EUR", True),
    _City("Berlin", 52.5200, 13.4050, 0.20, 0.16, "EUR", True),
    _City("Madrid", 40.4168, -3.7038, 0.20, 0.15, "EUR", True),
    _City("Rome", 41.9028, 12.4964, 0.18, 0.13, "EUR", True),
    _City("Amsterdam", 52.3676, 4.9041, 0.12, 0.08, "EUR", True),
    _City("Vienna", 48.2082, 16.3738, 0.12, 0.08, "EUR", True),
    _City("Warsaw", 52.2297, 21.0122, 0.15, 0.10, "EUR", True),
    _City("Lisbon", 38.7223, -9.1393, 0.15, 0.08, "EUR", True),
    _City("London", 51.5072, -0.1276, 0.20, 0.5, "GBP", False),
    _City("New York", 40.7128, -74.0060, 0.20, 0.5, "USD", False),
)
_HOME_CITIES = np.array([i for i, c in enumerate(_CITIES) if c.home])
_FOREIGN_CITIES = np.array([i for i, c in enumerate(_CITIES) if not c.home])
_CITY_LAT = np.array([c.lat for c in _CITIES])
_CITY_LON = np.array([c.lon for c in _CITIES])
_CITY_SPREAD = np.array([c.spread_deg for c in _CITIES])
_CITY_WEIGHT = np.array([c.weight for c in _CITIES])
_CURRENCIES = ("EUR", "GBP", "USD")
_CITY_CURRENCY = np.array([_CURRENCIES.index(c.currency) for c in _CITIES])

_FOREIGN_TERMINAL_SHARE = 0.04

# category: (share of terminals, amount multiplier)
_MERCHANT_CATEGORIES = {
    "grocery": (0.25, 1.0),
    "restaurant": (0.15, 1.2),
    "fuel": (0.12, 1.4),
    "retail": (0.15, 1.6),
    "electronics": (0.05, 3.5),
    "travel": (0.04, 4.0),
    "online": (0.14, 1.3),
    "pharmacy": (0.10, 0.6),
}
_CATEGORY_NAMES = np.array(list(_MERCHANT_CATEGORIES), dtype=object)
_CATEGORY_SHARE = np.array([share for share, _ in _MERCHANT_CATEGORIES.values()])
_CATEGORY_FACTOR = np.array([factor for _, factor in _MERCHANT_CATEGORIES.values()])
_ONLINE = list(_MERCHANT_CATEGORIES).index("online")

_USUAL_TERMINALS = 20
# Probability of paying at the i-th nearest usual terminal: nearer is likelier.
_RANK_WEIGHTS = 1.0 / np.arange(1, _USUAL_TERMINALS + 1) ** 0.8

# Relative volume per hour of day, 0h to 23h.
_HOURLY_WEIGHTS = np.array(
    [0.3, 0.2, 0.15, 0.1, 0.1, 0.2, 0.6, 1.5, 2.5, 3.0, 3.5, 4.5,
     6.0, 5.5, 3.5, 3.0, 3.5, 4.5, 5.5, 5.5, 4.5, 3.0, 1.8, 0.8]
)
_HOURLY_P = _HOURLY_WEIGHTS / _HOURLY_WEIGHTS.sum()
# Volume factor per weekday, Monday to Sunday.
_WEEKDAY_FACTORS = np.array([0.95, 1.0, 1.0, 1.05, 1.15, 1.25, 0.55])

# Fraud event rates, tuned for an overall fraud rate of about 0.5 %.
_COMPROMISES_PER_TERMINAL_MONTH = 0.005
_STOLEN_CARDS_PER_CUSTOMER_DAY = 0.00025
_CARD_TESTS_PER_CUSTOMER_DAY = 0.00015
_IMPOSSIBLE_TRAVEL_PER_TRANSACTION = 0.0008
_IMPOSSIBLE_TRAVEL_MIN_KM = 300.0

# Share of genuine transactions disputed by the customer and then cleared.
_CLEARED_DISPUTE_RATE = 0.001

# Drift: the spending shift's factors, and how often accounts are taken over.
_SHIFTED_AMOUNT_FACTOR = 1.6
_SHIFTED_EXTRA_PAYMENTS = 0.5
_TAKEOVERS_PER_CUSTOMER_DAY = 0.002


# --- Public API --------------------------------------------------------------


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. The same configuration always gives the same data."""

    customers: int = 4000
    """Number of card holders."""
    terminals: int = 2000
    """Number of payment terminals (merchants), including a few abroad."""
    days: int = 120
    """Length of the simulated period in days."""
    start: datetime.date = datetime.date(2026, 1, 1)
    """First simulated day; transactions fall in [start, start + days)."""
    seed: int = 42
    """Seed of the random generator; another seed gives another dataset."""
    drift: str | None = None
    """How the world changes at ``drift_start``: one of ``DRIFTS``, or None for no change."""
    drift_start: datetime.date | None = None
    """First day of the changed world; required with ``drift``."""

    def __post_init__(self) -> None:
        for field in ("customers", "terminals", "days"):
            value = getattr(self, field)
            if value < 1:
                raise ValueError(f"{field} must be at least 1, got {value}")
        if self.drift is not None and self.drift not in DRIFTS:
            raise ValueError(f"drift must be one of {DRIFTS}, got {self.drift!r}")
        if (self.drift is None) != (self.drift_start is None):
            raise ValueError("drift and drift_start go together: set both or neither")
        end = self.start + datetime.timedelta(days=self.days)
        if self.drift_start is not None and not self.start < self.drift_start < end:
            raise ValueError(f"drift_start {self.drift_start} must fall after {self.start} and before {end}")


@dataclass
class SimulatedDataset:
    """The simulated tables.

    ``transactions``, ``fraud_labels``, ``customers`` and ``terminals`` are what
    a payment gateway would deliver. ``fraud_truth`` names the scenario behind
    each fraudulent transaction; it is for evaluation only and not part of the
    data contract.
    """

    transactions: pd.DataFrame
    fraud_labels: pd.DataFrame
    customers: pd.DataFrame
    terminals: pd.DataFrame
    fraud_truth: pd.DataFrame


def simulate(config: SimulationConfig, progress: _Progress | None = None) -> SimulatedDataset:
    """Simulate customers, terminals, transactions and fraud labels."""
    report = progress or (lambda message: None)
    rng = np.random.default_rng(config.seed)
    period = _Period(config.start, config.days)

    customers = _generate_customers(rng, config.customers)
    report(f"customers: {config.customers:,} generated")
    terminals = _generate_terminals(rng, config.terminals)
    customers.usual_terminals = _usual_terminals(customers, terminals)
    report(
        f"terminals: {config.terminals:,} generated "
        f"({int(terminals.domestic.sum()):,} domestic, {int((~terminals.domestic).sum()):,} abroad)"
    )

    genuine = _genuine_transactions(rng, period, customers, terminals, report)
    _compromise_terminals(rng, period, terminals, genuine)
    travel = _impossible_travel(rng, genuine, customers, terminals)
    stolen = _stolen_cards(rng, period, customers, terminals)
    testing = _card_testing(rng, period, customers, terminals)
    transactions = _Transactions.concat([genuine, travel, stolen, testing])
    transactions = transactions.within(period).sorted_by_time()
    labels = _fraud_labels(rng, transactions)
    if config.drift is not None:
        drift_rng = np.random.default_rng([config.seed, 1])  # leaves the undrifted stream as it was
        changes_us = int(np.datetime64(config.drift_start, "us").astype(np.int64))
        changed = _CHANGES_BY_DRIFT[config.drift](drift_rng, transactions, changes_us, period, customers, terminals)
        transactions, labels = _merge(transactions, labels, changed, _fraud_labels(drift_rng, changed))
        report(f"drift: {config.drift} from {config.drift_start} ({changed.size:,} transactions added)")
    report(_fraud_summary(transactions))
    cleared = int((labels.is_fraud == 0).sum())
    report(f"labels: {len(labels.transaction):,} reports ({cleared:,} cleared disputes)")
    return _build_dataset(transactions, labels, customers, terminals)


def write_dataset(
    dataset: SimulatedDataset, out_dir: Path, file_format: str = "parquet"
) -> dict[str, Path]:
    """Write every table of ``dataset`` to ``out_dir`` as ``<table>.<format>``.

    ``file_format`` is ``"parquet"`` or ``"csv"`` (times as ISO-8601).
    Returns the path of each table by name.
    """
    if file_format not in ("parquet", "csv"):
        raise ValueError(f"file_format must be 'parquet' or 'csv', got {file_format!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {
        "transactions": dataset.transactions,
        "fraud_labels": dataset.fraud_labels,
        "customers": dataset.customers,
        "terminals": dataset.terminals,
        "fraud_truth": dataset.fraud_truth,
    }
    paths = {}
    for name, frame in tables.items():
        path = out_dir / f"{name}.{file_format}"
        if file_format == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%f")
        paths[name] = path
    return paths


# --- Internal building blocks ------------------------------------------------


@dataclass(frozen=True)
class _Period:
    start: datetime.date
    days: int

    @property
    def start_us(self) -> int:
        """Start of the first day, in microseconds since the Unix epoch."""
        return int(np.datetime64(self.start, "us").astype(np.int64))

    @property
    def end_us(self) -> int:
        return self.start_us + self.days * _DAY_US

    def random_times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Uniform random moments in the period (fraudsters keep no office hours)."""
        return self.start_us + rng.integers(0, self.days * _DAY_US, n)


@dataclass
class _Customers:
    city: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    mean_amount: np.ndarray
    amount_sigma: np.ndarray  # sigma of the lognormal noise around mean_amount
    tx_per_day: np.ndarray
    usual_terminals: np.ndarray | None = None  # (customers, k) terminal indices

    @property
    def size(self) -> int:
        return len(self.city)


@dataclass
class _Terminals:
    city: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    category: np.ndarray  # index into _CATEGORY_NAMES
    currency: np.ndarray  # index into _CURRENCIES

    @property
    def size(self) -> int:
        return len(self.city)

    @property
    def domestic(self) -> np.ndarray:
        return np.isin(self.city, _HOME_CITIES)


@dataclass
class _Transactions:
    time_us: np.ndarray
    customer: np.ndarray
    terminal: np.ndarray
    amount: np.ndarray
    scenario: np.ndarray  # 0 genuine, else 1 + index into FRAUD_SCENARIOS

    @property
    def size(self) -> int:
        return len(self.time_us)

    @classmethod
    def empty(cls) -> _Transactions:
        return cls.concat([])

    @classmethod
    def concat(cls, parts: list[_Transactions]) -> _Transactions:
        def join(name: str, dtype: type) -> np.ndarray:
            return np.concatenate([np.empty(0, dtype)] + [getattr(p, name) for p in parts]).astype(dtype)

        return cls(
            time_us=join("time_us", np.int64),
            customer=join("customer", np.int64),
            terminal=join("terminal", np.int64),
            amount=join("amount", np.float64),
            scenario=join("scenario", np.int8),
        )

    def take(self, index: np.ndarray) -> _Transactions:
        return _Transactions(
            self.time_us[index], self.customer[index], self.terminal[index],
            self.amount[index], self.scenario[index],
        )

    def within(self, period: _Period) -> _Transactions:
        """Drop fraud that spilled over the edges of the period."""
        inside = (self.time_us >= period.start_us) & (self.time_us < period.end_us)
        return self.take(inside)

    def sorted_by_time(self) -> _Transactions:
        return self.take(np.argsort(self.time_us, kind="stable"))


def _scatter_around(rng: np.random.Generator, city: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian positions around each city's centre."""
    spread = _CITY_SPREAD[city]
    lat = _CITY_LAT[city] + rng.normal(0.0, spread)
    # A degree of longitude shrinks with latitude; widen it to keep clusters round.
    lon = _CITY_LON[city] + rng.normal(0.0, spread) / np.cos(np.radians(_CITY_LAT[city]))
    return lat, lon


def _haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    lat1, lon1, lat2, lon2 = map(np.radians, (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(a))


def _generate_customers(rng: np.random.Generator, n: int) -> _Customers:
    weights = _CITY_WEIGHT[_HOME_CITIES]
    city = rng.choice(_HOME_CITIES, size=n, p=weights / weights.sum())
    lat, lon = _scatter_around(rng, city)
    return _Customers(
        city=city,
        lat=lat,
        lon=lon,
        mean_amount=np.clip(rng.lognormal(np.log(35.0), 0.6, n), 10.0, 150.0),
        amount_sigma=rng.uniform(0.2, 0.7, n),
        tx_per_day=np.clip(rng.lognormal(np.log(1.5), 0.6, n), 0.5, 4.0),
    )


def _generate_terminals(rng: np.random.Generator, n: int) -> _Terminals:
    n_foreign = int(n * _FOREIGN_TERMINAL_SHARE)
    weights = _CITY_WEIGHT[_HOME_CITIES]
    city = np.concatenate([
        rng.choice(_HOME_CITIES, size=n - n_foreign, p=weights / weights.sum()),
        rng.choice(_FOREIGN_CITIES, size=n_foreign),
    ])
    city = rng.permutation(city)  # so ids do not reveal which terminals are abroad
    lat, lon = _scatter_around(rng, city)
    category = rng.choice(len(_CATEGORY_NAMES), size=n, p=_CATEGORY_SHARE)
    return _Terminals(city=city, lat=lat, lon=lon, category=category, currency=_CITY_CURRENCY[city])


def _usual_terminals(customers: _Customers, terminals: _Terminals) -> np.ndarray:
    """The nearest domestic terminals to each customer's home, nearest first."""
    domestic = np.flatnonzero(terminals.domestic)
    k = min(_USUAL_TERMINALS, len(domestic))
    tree = cKDTree(np.column_stack([terminals.lat[domestic], terminals.lon[domestic]]))
    _, nearest = tree.query(np.column_stack([customers.lat, customers.lon]), k=k)
    return domestic[np.asarray(nearest).reshape(customers.size, k)]


def _genuine_transactions(
    rng: np.random.Generator,
    period: _Period,
    customers: _Customers,
    terminals: _Terminals,
    report: _Progress,
) -> _Transactions:
    """Everyday payments, generated a few days at a time to report progress."""
    chunk_days = math.ceil(period.days / 5)  # five progress reports
    parts, total = [], 0
    for first_day in range(0, period.days, chunk_days):
        days = np.arange(first_day, min(first_day + chunk_days, period.days))
        weekday = (period.start.weekday() + days) % 7
        counts = rng.poisson(customers.tx_per_day[:, None] * _WEEKDAY_FACTORS[weekday][None, :]).ravel()
        customer = np.repeat(np.repeat(np.arange(customers.size), len(days)), counts)
        day = np.repeat(np.tile(days, customers.size), counts)
        n = len(customer)

        hour = rng.choice(24, size=n, p=_HOURLY_P)
        time_us = period.start_us + day * _DAY_US + hour * _HOUR_US + rng.integers(0, _HOUR_US, n)
        terminal = _usual_terminal_of(rng, customers, customer)
        amount = _everyday_amounts(rng, customers, terminals, customer, terminal)
        parts.append(_Transactions(time_us, customer, terminal, amount, np.zeros(n, np.int8)))

        total += n
        report(f"transactions: day {days[-1] + 1}/{period.days} ({total:,} so far)")
    return _Transactions.concat(parts)


def _usual_terminal_of(rng: np.random.Generator, customers: _Customers, customer: np.ndarray) -> np.ndarray:
    """One of each customer's usual terminals, the nearer ones likelier."""
    usual = customers.usual_terminals
    rank_weights = _RANK_WEIGHTS[: usual.shape[1]]
    return usual[customer, rng.choice(usual.shape[1], size=len(customer), p=rank_weights / rank_weights.sum())]


def _everyday_amounts(
    rng: np.random.Generator,
    customers: _Customers,
    terminals: _Terminals,
    customer: np.ndarray,
    terminal: np.ndarray,
) -> np.ndarray:
    """The customer's typical amount, scaled by merchant category, with lognormal noise."""
    sigma = customers.amount_sigma[customer]
    noise = rng.lognormal(-(sigma**2) / 2, sigma)  # mean 1
    amount = customers.mean_amount[customer] * _CATEGORY_FACTOR[terminals.category[terminal]] * noise
    return _cents(amount)


def _cents(amount: np.ndarray) -> np.ndarray:
    return np.maximum(np.round(amount, 2), 0.01)


def _compromise_terminals(
    rng: np.random.Generator, period: _Period, terminals: _Terminals, tx: _Transactions
) -> None:
    """Skim a few domestic terminals: mark part of their payments in a window as fraud.

    The payments themselves stay as the customers made them (normal amounts);
    only their scenario changes, in place.
    """
    domestic = np.flatnonzero(terminals.domestic)
    expected = _COMPROMISES_PER_TERMINAL_MONTH * len(domestic) * period.days / 30
    chosen = rng.choice(domestic, size=min(rng.poisson(expected), len(domestic)), replace=False)

    window_start = np.full(terminals.size, np.iinfo(np.int64).max)
    window_end = np.zeros(terminals.size, np.int64)
    fraud_share = np.zeros(terminals.size)
    window_start[chosen] = period.random_times(rng, len(chosen))
    window_end[chosen] = window_start[chosen] + rng.integers(14, 29, len(chosen)) * _DAY_US
    fraud_share[chosen] = rng.uniform(0.3, 0.6, len(chosen))

    marked = (
        (tx.time_us >= window_start[tx.terminal])
        & (tx.time_us < window_end[tx.terminal])
        & (rng.random(tx.size) < fraud_share[tx.terminal])
    )
    tx.scenario[marked] = _COMPROMISED_TERMINAL


def _impossible_travel(
    rng: np.random.Generator, tx: _Transactions, customers: _Customers, terminals: _Terminals
) -> _Transactions:
    """A payment far away within an hour before or after a genuine one near home."""
    genuine = np.flatnonzero(tx.scenario == _GENUINE)
    n = rng.binomial(len(genuine), _IMPOSSIBLE_TRAVEL_PER_TRANSACTION)
    anchor = rng.choice(genuine, size=n, replace=False)
    customer = tx.customer[anchor]
    terminal = _far_terminals(rng, customers, terminals, customer)
    offset = rng.integers(5 * _MINUTE_US, 60 * _MINUTE_US, n) * rng.choice([-1, 1], n)
    amount = _cents(customers.mean_amount[customer] * rng.uniform(1.0, 4.0, n))
    found = terminal >= 0
    travel = _Transactions(
        tx.time_us[anchor] + offset, customer, terminal, amount, np.full(n, _IMPOSSIBLE_TRAVEL, np.int8)
    )
    return travel.take(found)


def _far_terminals(
    rng: np.random.Generator, customers: _Customers, terminals: _Terminals, customer: np.ndarray
) -> np.ndarray:
    """A random terminal in another city at least 300 km from home; -1 if none was found."""

    def far(who: np.ndarray, candidate: np.ndarray) -> np.ndarray:
        distance_km = _haversine_km(
            customers.lat[who], customers.lon[who], terminals.lat[candidate], terminals.lon[candidate]
        )
        return (terminals.city[candidate] != customers.city[who]) & (distance_km > _IMPOSSIBLE_TRAVEL_MIN_KM)

    return _sample_terminals(rng, terminals, customer, far)


def _sample_terminals(
    rng: np.random.Generator,
    terminals: _Terminals,
    customer: np.ndarray,
    acceptable: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """A random terminal per customer that `acceptable(customers, terminals)` accepts, by
    rejection sampling (nearly every draw succeeds); -1 where 20 draws found none."""
    chosen = np.full(len(customer), -1)
    for _ in range(20):
        pending = np.flatnonzero(chosen < 0)
        if len(pending) == 0:
            break
        candidate = rng.integers(0, terminals.size, len(pending))
        accepted = acceptable(customer[pending], candidate)
        chosen[pending[accepted]] = candidate[accepted]
    return chosen


def _stolen_cards(
    rng: np.random.Generator, period: _Period, customers: _Customers, terminals: _Terminals
) -> _Transactions:
    """A thief spends big with a card for 1-7 days at terminals its owner never uses."""
    n_cards = rng.poisson(_STOLEN_CARDS_PER_CUSTOMER_DAY * customers.size * period.days)
    owner = rng.integers(0, customers.size, n_cards)
    stolen_at = period.random_times(rng, n_cards)
    duration_us = rng.integers(1, 8, n_cards) * _DAY_US
    payments = 1 + rng.poisson(2.5 * duration_us / _DAY_US)

    card = np.repeat(np.arange(n_cards), payments)
    customer = owner[card]
    time_us = stolen_at[card] + (rng.random(len(card)) * duration_us[card]).astype(np.int64)
    terminal = _unusual_terminals(rng, customers, terminals, customer)
    amount = _cents(customers.mean_amount[customer] * rng.uniform(3.0, 8.0, len(card)))
    stolen = _Transactions(time_us, customer, terminal, amount, np.full(len(card), _STOLEN_CARD, np.int8))
    return stolen.take(terminal >= 0)


def _unusual_terminals(
    rng: np.random.Generator, customers: _Customers, terminals: _Terminals, customer: np.ndarray
) -> np.ndarray:
    """A random terminal outside the customer's usual set; -1 if none was found."""

    def unusual(who: np.ndarray, candidate: np.ndarray) -> np.ndarray:
        return ~(customers.usual_terminals[who] == candidate[:, None]).any(axis=1)

    return _sample_terminals(rng, terminals, customer, unusual)


def _card_testing(
    rng: np.random.Generator, period: _Period, customers: _Customers, terminals: _Terminals
) -> _Transactions:
    """Bursts of tiny online payments to test a card, often followed by a cash-out."""
    online = np.flatnonzero(terminals.category == _ONLINE)
    if len(online) == 0:
        return _Transactions.empty()
    n_bursts = rng.poisson(_CARD_TESTS_PER_CUSTOMER_DAY * customers.size * period.days)
    owner = rng.integers(0, customers.size, n_bursts)
    shop = rng.choice(online, size=n_bursts)
    begins = period.random_times(rng, n_bursts)
    tests = rng.integers(5, 21, n_bursts)

    burst = np.repeat(np.arange(n_bursts), tests)
    gaps_us = rng.integers(3 * _SECOND_US, 20 * _SECOND_US, len(burst))
    offsets = _cumsum_per_group(gaps_us, tests)
    small = _Transactions(
        begins[burst] + offsets,
        owner[burst],
        shop[burst],
        np.round(rng.uniform(0.5, 3.0, len(burst)), 2),
        np.full(len(burst), _CARD_TESTING, np.int8),
    )

    # The cash-out comes a few minutes after the last test payment.
    cashes_out = rng.random(n_bursts) < 0.7
    last_test = begins + offsets[np.cumsum(tests) - 1]
    n_large = int(cashes_out.sum())
    large = _Transactions(
        last_test[cashes_out] + rng.integers(1 * _MINUTE_US, 10 * _MINUTE_US, n_large),
        owner[cashes_out],
        shop[cashes_out],
        _cents(np.clip(rng.lognormal(np.log(400.0), 0.5, n_large), 100.0, 2500.0)),
        np.full(n_large, _CARD_TESTING, np.int8),
    )
    return _Transactions.concat([small, large])


def _spending_shift(
    rng: np.random.Generator,
    tx: _Transactions,
    changes_us: int,
    period: _Period,
    customers: _Customers,
    terminals: _Terminals,
) -> _Transactions:
    """From `changes_us` on, genuine payments cost more (in place) and there are more of them
    (returned): extra payments by the same customers at the same terminals, hours later."""
    after = (tx.time_us >= changes_us) & (tx.scenario == _GENUINE)
    tx.amount[after] = _cents(tx.amount[after] * _SHIFTED_AMOUNT_FACTOR)
    chosen = np.flatnonzero(after)[rng.random(int(after.sum())) < _SHIFTED_EXTRA_PAYMENTS]
    customer, terminal = tx.customer[chosen], tx.terminal[chosen]
    time_us = tx.time_us[chosen] + rng.integers(1 * _HOUR_US, 12 * _HOUR_US, len(chosen))
    amount = _cents(_everyday_amounts(rng, customers, terminals, customer, terminal) * _SHIFTED_AMOUNT_FACTOR)
    return _Transactions(time_us, customer, terminal, amount, np.zeros(len(chosen), np.int8)).within(period)


def _account_takeovers(
    rng: np.random.Generator,
    tx: _Transactions,
    changes_us: int,
    period: _Period,
    customers: _Customers,
    terminals: _Terminals,
) -> _Transactions:
    """From `changes_us` on, fraudsters with stolen credentials pay 1-2x the usual amount at
    the customer's own usual terminals, at any hour, for 1-3 days: a pattern the model has
    never seen, hidden from the terminal and location features."""
    days_left = (period.end_us - changes_us) / _DAY_US
    n_takeovers = rng.poisson(_TAKEOVERS_PER_CUSTOMER_DAY * customers.size * days_left)
    victim = rng.integers(0, customers.size, n_takeovers)
    taken_at = changes_us + rng.integers(0, period.end_us - changes_us, n_takeovers)
    duration_us = rng.integers(1, 4, n_takeovers) * _DAY_US
    payments = rng.integers(2, 7, n_takeovers)

    takeover = np.repeat(np.arange(n_takeovers), payments)
    customer = victim[takeover]
    time_us = taken_at[takeover] + (rng.random(len(takeover)) * duration_us[takeover]).astype(np.int64)
    terminal = _usual_terminal_of(rng, customers, customer)
    amount = _cents(customers.mean_amount[customer] * rng.uniform(1.0, 2.0, len(customer)))
    scenario = np.full(len(customer), _ACCOUNT_TAKEOVER, np.int8)
    return _Transactions(time_us, customer, terminal, amount, scenario).within(period)


_CHANGES_BY_DRIFT = {"spending_shift": _spending_shift, "new_fraud_pattern": _account_takeovers}


def _merge(
    tx: _Transactions, labels: _Labels, added: _Transactions, added_labels: _Labels
) -> tuple[_Transactions, _Labels]:
    """Both sets of transactions in time order, their labels re-pointed and in arrival order."""
    both = _Transactions.concat([tx, added])
    order = np.argsort(both.time_us, kind="stable")
    position = np.empty(both.size, np.int64)
    position[order] = np.arange(both.size)
    transaction = np.concatenate([position[labels.transaction], position[tx.size + added_labels.transaction]])
    is_fraud = np.concatenate([labels.is_fraud, added_labels.is_fraud])
    reported_us = np.concatenate([labels.reported_us, added_labels.reported_us])
    arrival = np.lexsort((transaction, reported_us))
    return both.take(order), _Labels(transaction[arrival], is_fraud[arrival], reported_us[arrival])


def _cumsum_per_group(values: np.ndarray, group_sizes: np.ndarray) -> np.ndarray:
    """Running sum of ``values`` restarting at each group (groups are consecutive)."""
    running = np.cumsum(values)
    before_group = np.concatenate([[0], running])[np.cumsum(group_sizes) - group_sizes]
    return running - np.repeat(before_group, group_sizes)


def _report_delays_us(rng: np.random.Generator, n: int, median_days: float, sigma: float) -> np.ndarray:
    """Days-to-weeks reporting delays: lognormal, clipped to 1-60 days."""
    days = np.clip(rng.lognormal(np.log(median_days), sigma, n), 1.0, 60.0)
    return np.round(days * _DAY_US).astype(np.int64)


@dataclass
class _Labels:
    transaction: np.ndarray  # row index into the sorted transactions
    is_fraud: np.ndarray
    reported_us: np.ndarray


def _fraud_labels(rng: np.random.Generator, tx: _Transactions) -> _Labels:
    """Every fraud gets reported; a few genuine payments are disputed and cleared."""
    fraud = np.flatnonzero(tx.scenario != _GENUINE)
    genuine = np.flatnonzero(tx.scenario == _GENUINE)
    disputed = genuine[rng.random(len(genuine)) < _CLEARED_DISPUTE_RATE]
    transaction = np.concatenate([fraud, disputed])
    delay = np.concatenate([
        _report_delays_us(rng, len(fraud), median_days=7.0, sigma=0.8),
        _report_delays_us(rng, len(disputed), median_days=14.0, sigma=0.6),
    ])
    is_fraud = np.concatenate([np.ones(len(fraud), np.int8), np.zeros(len(disputed), np.int8)])
    reported_us = tx.time_us[transaction] + delay
    order = np.lexsort((transaction, reported_us))  # in order of arrival
    return _Labels(transaction[order], is_fraud[order], reported_us[order])


def _fraud_summary(tx: _Transactions) -> str:
    per_scenario = np.bincount(tx.scenario, minlength=len(_SCENARIO_NAMES))[1:]
    n_fraud = int(per_scenario.sum())
    details = ", ".join(f"{name} {count:,}" for name, count in zip(_SCENARIO_NAMES[1:], per_scenario) if count)
    return f"fraud: {n_fraud:,} fraudulent transactions ({100 * n_fraud / max(tx.size, 1):.2f} %): {details}"


def _format_ids(prefix: str, count: int, min_width: int) -> np.ndarray:
    """``prefix`` followed by 1..count, zero-padded to at least ``min_width`` digits."""
    if count == 0:  # np.strings.zfill cannot size an empty array
        return np.empty(0, dtype=object)
    width = max(min_width, len(str(count)))
    digits = np.strings.zfill(np.arange(1, count + 1).astype(str), width)
    return np.strings.add(prefix, digits).astype(object)


def _build_dataset(
    tx: _Transactions, labels: _Labels, customers: _Customers, terminals: _Terminals
) -> SimulatedDataset:
    transaction_ids = _format_ids("tx", tx.size, 10)
    customer_ids = _format_ids("cust", customers.size, 5)
    terminal_ids = _format_ids("term", terminals.size, 5)
    currencies = np.array(_CURRENCIES, dtype=object)
    scenario_names = np.array(_SCENARIO_NAMES, dtype=object)
    fraud = np.flatnonzero(tx.scenario != _GENUINE)

    return SimulatedDataset(
        transactions=pd.DataFrame({
            "transaction_id": transaction_ids,
            "event_time": tx.time_us.astype("datetime64[us]"),
            "customer_id": customer_ids[tx.customer],
            "terminal_id": terminal_ids[tx.terminal],
            "amount": tx.amount,
            "currency": currencies[terminals.currency[tx.terminal]],
        }),
        fraud_labels=pd.DataFrame({
            "transaction_id": transaction_ids[labels.transaction],
            "is_fraud": labels.is_fraud,
            "reported_at": labels.reported_us.astype("datetime64[us]"),
        }),
        customers=pd.DataFrame({
            "customer_id": customer_ids,
            "home_lat": customers.lat,
            "home_lon": customers.lon,
        }),
        terminals=pd.DataFrame({
            "terminal_id": terminal_ids,
            "lat": terminals.lat,
            "lon": terminals.lon,
            "merchant_category": _CATEGORY_NAMES[terminals.category],
        }),
        fraud_truth=pd.DataFrame({
            "transaction_id": transaction_ids[fraud],
            "scenario": scenario_names[tx.scenario[fraud]],
        }),
    )
