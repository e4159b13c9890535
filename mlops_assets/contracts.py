"""The data contracts of the four raw inputs (see DESIGN.md, "Data contracts").

A contract names the warehouse table an input lands in, its id column, and each field's
type and rule. The loader (`mlops_assets/ingestion.py`) turns these into SQL that splits a
file into rows that keep the contract and rejected rows with a reason.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    """A field of a contract. `rule` is a SQL condition on the typed value `v`."""

    name: str
    sql_type: str
    rule: str | None = None
    rule_text: str | None = None
    required: bool = True


@dataclass(frozen=True)
class Contract:
    """What rows of one input must look like, and where they land."""

    name: str
    asset_name: str
    description: str
    table: str
    keys: tuple[str, ...]  # a row's identity: loading it again adds nothing
    fields: tuple[Field, ...]
    time_column: str | None = None
    keeps_extra_fields: bool = False
    topic: str | None = None  # the Kafka topic this input streams on, if it does

    @property
    def required_fields(self) -> tuple[Field, ...]:
        return tuple(field for field in self.fields if field.required)


_ID = dict(sql_type="VARCHAR", rule="trim(v) <> ''", rule_text="must not be empty")

TRANSACTIONS = Contract(
    name="transactions",
    asset_name="raw_transactions",
    description="Card transactions as received from the payment gateway, one row per transaction_id.",
    table="raw.transactions",
    keys=("transaction_id",),
    fields=(
        Field("transaction_id", **_ID),
        Field("event_time", "TIMESTAMP"),
        Field("customer_id", **_ID),
        Field("terminal_id", **_ID),
        Field("amount", "DOUBLE", "v >= 0 AND isfinite(v)", "must be a number >= 0"),
        Field(
            "currency",
            "VARCHAR",
            "regexp_full_match(v, '[A-Z]{3}')",
            "must be an ISO 4217 code of 3 capital letters",
        ),
    ),
    time_column="event_time",
    keeps_extra_fields=True,
    topic="transactions",
)

FRAUD_LABELS = Contract(
    name="fraud_labels",
    asset_name="raw_fraud_labels",
    description="Fraud reports (chargebacks and cleared disputes), one per transaction, with when each became known.",
    table="raw.fraud_labels",
    keys=("transaction_id",),
    fields=(
        Field("transaction_id", **_ID),
        Field("is_fraud", "INTEGER", "v IN (0, 1)", "must be 0 or 1"),
        Field("reported_at", "TIMESTAMP"),
    ),
    time_column="reported_at",
    topic="fraud_labels",
)

CUSTOMERS = Contract(
    name="customers",
    asset_name="customer_profiles",
    description="Card holders' contextual profiles: where each customer lives.",
    table="raw.customers",
    keys=("customer_id",),
    fields=(
        Field("customer_id", **_ID),
        Field("home_lat", "DOUBLE", "v BETWEEN -90 AND 90", "must be a latitude in [-90, 90]"),
        Field("home_lon", "DOUBLE", "v BETWEEN -180 AND 180", "must be a longitude in [-180, 180]"),
    ),
)

TERMINALS = Contract(
    name="terminals",
    asset_name="terminal_profiles",
    description="Payment terminals' contextual profiles: location and merchant category.",
    table="raw.terminals",
    keys=("terminal_id",),
    fields=(
        Field("terminal_id", **_ID),
        Field("lat", "DOUBLE", "v BETWEEN -90 AND 90", "must be a latitude in [-90, 90]"),
        Field("lon", "DOUBLE", "v BETWEEN -180 AND 180", "must be a longitude in [-180, 180]"),
        Field("merchant_category", "VARCHAR", required=False),
    ),
)

# The raw inputs: each becomes a raw asset.
CONTRACTS = {contract.name: contract for contract in (TRANSACTIONS, FRAUD_LABELS, CUSTOMERS, TERMINALS)}

# Fraud scores are an output of the platform, but they come back from Kafka under a contract too.
FRAUD_SCORES = Contract(
    name="fraud_scores",
    asset_name="fraud_scores",
    description="Fraud score and decision per transaction and model version.",
    table="scores.fraud_scores",
    keys=("transaction_id", "model_version"),
    fields=(
        Field("transaction_id", **_ID),
        Field("score", "DOUBLE", "v BETWEEN 0 AND 1", "must be a number in [0, 1]"),
        Field("decision", "VARCHAR", "v IN ('approve', 'review', 'decline')", "must be approve, review or decline"),
        Field("model_name", **_ID),
        Field("model_version", **_ID),
        Field("feature_view_version", **_ID),
        Field("scored_at", "TIMESTAMP"),
        Field("latency_ms", "DOUBLE", required=False),
    ),
    time_column="scored_at",
    topic="fraud_scores",
)
