"""Compiles the feature catalog to DuckDB SQL: the offline feature store.

Every windowed feature is a window function over the entity's transactions ordered by time
with the frame `RANGE BETWEEN <w> PRECEDING AND CURRENT ROW EXCLUDE GROUP`, i.e. `[t - w, t)`:
only strictly earlier events count, so a transaction never sees itself or anything at its
own timestamp. Known fraud rates join each transaction to the fraud labels at the same
entity that were *reported* before its time, so a late label cannot leak into the past.
"""
from mlops_assets.contracts import CONTRACTS
from mlops_assets.features.catalog import Feature, FeatureGroup, FeatureView, LabelGroup

TRANSACTIONS = CONTRACTS["transactions"].table
FRAUD_LABELS = CONTRACTS["fraud_labels"].table
CUSTOMERS = CONTRACTS["customers"].table
TERMINALS = CONTRACTS["terminals"].table

EARTH_RADIUS_KM = 6371.0088

_WINDOW_AGGREGATES = {
    "count": "count(*) OVER {window}",
    "sum": "coalesce(sum(b.{of}) OVER {window}, 0)",
    "mean": "avg(b.{of}) OVER {window}",
    "stddev": "stddev_samp(b.{of}) OVER {window}",
    "min": "min(b.{of}) OVER {window}",
    "max": "max(b.{of}) OVER {window}",
}


def feature_group_sql(group: FeatureGroup) -> str:
    """A query with one row per transaction: key, event time, the group's features, version."""
    windows: dict[str, str] = {}
    columns = [_feature_expression(feature, windows) for feature in group.features]
    fraud_windows = sorted(
        {(f.by, f.window_seconds) for f in group.features if f.function == "known_fraud_rate"}
    )
    known_fraud_ctes = [
        _known_fraud_cte(by, [seconds for key, seconds in fraud_windows if key == by])
        for by in sorted({by for by, _ in fraud_windows})
    ]
    known_fraud_joins = "".join(
        f"\n  LEFT JOIN known_fraud_by_{_entity_name(by)} AS k_{_entity_name(by)} USING (transaction_id)"
        for by in sorted({by for by, _ in fraud_windows})
    )
    window_clause = (
        "\nWINDOW " + ",\n  ".join(f"{name} AS ({frame})" for name, frame in windows.items())
        if windows
        else ""
    )
    select_list = ",\n  ".join(
        f"CAST({expression} AS DOUBLE) AS {feature.name}"
        for feature, expression in zip(group.features, columns)
    )
    return (
        f"WITH base AS ({_base_sql(group)})"
        + "".join(f",\n{cte}" for cte in known_fraud_ctes)
        + f"\nSELECT b.transaction_id, b.event_time,\n  {select_list},\n"
        f"  '{group.version}' AS feature_group_version\nFROM base AS b{known_fraud_joins}"
        + window_clause
    )


def label_group_sql(labels: LabelGroup) -> str:
    """One row per transaction: fraud (1) once reported, else 0, and when it became known."""
    return (
        "SELECT t.transaction_id, t.event_time, coalesce(l.is_fraud, 0) AS is_fraud,\n"
        "  l.reported_at AS label_reported_at,\n"
        f"  '{labels.version}' AS label_group_version\n"
        f"FROM {TRANSACTIONS} AS t LEFT JOIN {FRAUD_LABELS} AS l USING (transaction_id)"
    )


def feature_view_sql(view: FeatureView) -> str:
    """The feature view: keys, chosen features of each group, the label, the view version."""
    feature_columns = [
        f"g{index}.{feature.name}"
        for index, (_, features) in enumerate(view.features)
        for feature in features
    ]
    joins = "".join(
        f"\n  JOIN features.{group_name} AS g{index} USING (transaction_id)"
        for index, (group_name, _) in enumerate(view.features)
    )
    return (
        "SELECT t.transaction_id, t.event_time, t.customer_id, t.terminal_id,\n  "
        + ",\n  ".join(feature_columns)
        + ",\n  l.is_fraud, l.label_reported_at,\n"
        f"  '{view.version}' AS feature_view_version\n"
        f"FROM {TRANSACTIONS} AS t{joins}\n"
        f"  JOIN {view.label.table} AS l USING (transaction_id)\n"
        "ORDER BY t.event_time, t.transaction_id"
    )


def _base_sql(group: FeatureGroup) -> str:
    """The transactions, with home and terminal locations when a feature needs them."""
    if "customers" not in group.inputs:
        return (
            "SELECT transaction_id, event_time, customer_id, terminal_id, amount "
            f"FROM {TRANSACTIONS}"
        )
    return (
        "SELECT t.transaction_id, t.event_time, t.customer_id, t.terminal_id, t.amount,\n"
        "    c.home_lat, c.home_lon, m.lat AS terminal_lat, m.lon AS terminal_lon\n"
        f"  FROM {TRANSACTIONS} AS t\n"
        f"  LEFT JOIN {CUSTOMERS} AS c USING (customer_id)\n"
        f"  LEFT JOIN {TERMINALS} AS m USING (terminal_id)"
    )


def _entity_name(by: tuple[str, ...]) -> str:
    return "_".join(by)


def _earlier_events_frame(by: tuple[str, ...], seconds: int | None) -> str:
    start = "UNBOUNDED PRECEDING" if seconds is None else f"INTERVAL '{seconds} seconds' PRECEDING"
    return (
        f"PARTITION BY {', '.join(f'b.{column}' for column in by)} ORDER BY b.event_time "
        f"RANGE BETWEEN {start} AND CURRENT ROW EXCLUDE GROUP"
    )


def _window(by: tuple[str, ...], seconds: int | None, windows: dict[str, str]) -> str:
    """Registers the window of earlier events of `by` and returns its name."""
    name = f"w_{_entity_name(by)}_{'all' if seconds is None else seconds}"
    windows.setdefault(name, _earlier_events_frame(by, seconds))
    return name


def _feature_expression(feature: Feature, windows: dict[str, str]) -> str:
    function = feature.function
    if function == "value":
        return f"b.{feature.of}"
    if function == "hour_of_day":
        return "hour(b.event_time)"
    if function == "is_weekend":
        return "dayofweek(b.event_time) IN (0, 6)"  # DuckDB: Sunday is 0, Saturday 6
    if function == "is_night":
        start, end = feature.param("from_hour"), feature.param("to_hour")
        joiner = "AND" if start < end else "OR"  # a night that wraps midnight
        return f"(hour(b.event_time) >= {start} {joiner} hour(b.event_time) < {end})"
    if function == "distance_from_home_km":
        return (
            f"2 * {EARTH_RADIUS_KM} * asin(sqrt("
            "pow(sin(radians(b.terminal_lat - b.home_lat) / 2), 2) + "
            "cos(radians(b.home_lat)) * cos(radians(b.terminal_lat)) * "
            "pow(sin(radians(b.terminal_lon - b.home_lon) / 2), 2)))"
        )
    window = _window(feature.by, feature.window_seconds, windows)
    if function == "seconds_since_previous":
        return f"date_diff('microsecond', max(b.event_time) OVER {window}, b.event_time) / 1e6"
    if function in _WINDOW_AGGREGATES:
        return _WINDOW_AGGREGATES[function].format(of=feature.of, window=window)
    if function == "ratio_to_mean":
        return f"b.{feature.of} / nullif(avg(b.{feature.of}) OVER {window}, 0)"
    if function == "known_fraud_rate":
        known = f"coalesce(k_{_entity_name(feature.by)}.known_frauds_{feature.window_seconds}, 0)"
        return f"{known} / nullif(count(*) OVER {window}, 0)"
    raise ValueError(f"no SQL for feature function {function!r}")


def _known_fraud_cte(by: tuple[str, ...], window_seconds: list[int]) -> str:
    """Per transaction: how many earlier transactions of the same entity within each window
    had been reported as fraud before the transaction's own time."""
    widest = max(window_seconds)
    counts = ",\n    ".join(
        f"count(*) FILTER (WHERE f.fraud_time >= b.event_time - INTERVAL '{seconds} seconds') "
        f"AS known_frauds_{seconds}"
        for seconds in window_seconds
    )
    return (
        f"known_fraud_by_{_entity_name(by)} AS (\n"
        f"  SELECT b.transaction_id,\n    {counts}\n"
        "  FROM base AS b\n"
        f"  JOIN (SELECT {', '.join(f't.{column}' for column in by)}, t.event_time AS fraud_time, l.reported_at\n"
        f"        FROM {FRAUD_LABELS} AS l JOIN {TRANSACTIONS} AS t USING (transaction_id)\n"
        "        WHERE l.is_fraud = 1) AS f\n"
        f"    ON {' AND '.join(f'f.{column} = b.{column}' for column in by)}\n"
        "    AND f.fraud_time < b.event_time\n"
        f"    AND f.fraud_time >= b.event_time - INTERVAL '{widest} seconds'\n"
        "    AND f.reported_at < b.event_time\n"
        "  GROUP BY b.transaction_id)"
    )
