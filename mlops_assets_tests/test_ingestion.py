"""Loading files under the data contract: rejected rows with reasons, idempotent reloads,
and files that cannot be loaded refused before anything is written."""
import datetime as dt
import json

import pytest

from mlops_assets.contracts import FRAUD_LABELS, TRANSACTIONS
from mlops_assets.ingestion import REJECTED_ROWS, InputFileError, load_file

CSV = """transaction_id,event_time,customer_id,terminal_id,amount,currency,card_number,channel
t1,2026-01-01T10:00:00Z,c1,m1,12.5,EUR,4111111111111111,pos
t2,2026-01-01T12:00:00+02:00,c1,m1,3,EUR,,online
t3,not-a-time,c1,m1,1,EUR,,pos
t4,2026-01-01T10:00:00Z,c1,m1,-5,EUR,,pos
t5,2026-01-01T10:00:00Z,,m1,5,EUR,,pos
t6,2026-01-01T10:00:00Z,c1,m1,abc,EUR,,pos
t7,2026-01-01T10:00:00Z,c1,m1,5,euro,,pos
t1,2026-01-01T11:00:00Z,c1,m1,99,EUR,,pos
,2026-01-01T10:00:00Z,c1,m1,5,EUR,4111111111111111,pos
"""


@pytest.fixture
def transactions_csv(tmp_path):
    path = tmp_path / "transactions.csv"
    path.write_text(CSV)
    return str(path)


def test_bad_rows_are_rejected_with_their_reason_and_good_rows_stored(warehouse, transactions_csv):
    with warehouse.connect() as con:
        report = load_file(con, TRANSACTIONS, transactions_csv, run_id="run-1")
        stored = con.execute(
            "SELECT transaction_id, event_time, amount, extra_fields, ingest_run_id FROM raw.transactions ORDER BY 1"
        ).fetchall()
        reasons = dict(
            con.execute(f"SELECT json_extract_string(record, '$.transaction_id'), reason FROM {REJECTED_ROWS}").fetchall()
        )
        everything = json.dumps(con.execute(f"SELECT * FROM {REJECTED_ROWS}").fetchall(), default=str) + str(stored)

    assert (report.rows_read, report.rows_loaded, report.rows_duplicate, report.rows_rejected) == (9, 2, 1, 6)
    assert [row[0] for row in stored] == ["t1", "t2"]
    assert stored[0][1:3] == (dt.datetime(2026, 1, 1, 10), 12.5)  # the first t1 wins
    assert stored[1][1] == dt.datetime(2026, 1, 1, 10)  # +02:00 stored as UTC
    assert json.loads(stored[1][3]) == {"channel": "online"}  # extra fields pass through
    assert stored[0][4] == "run-1"
    assert reasons == {
        "t3": "event_time: is not an ISO-8601 time (got not-a-time)",
        "t4": "amount: must be a number >= 0 (got -5)",
        "t5": "customer_id: is missing",
        "t6": "amount: is not a number (got abc)",
        "t7": "currency: must be an ISO 4217 code of 3 capital letters (got euro)",
        None: "transaction_id: is missing",
    }
    assert report.rejection_reasons["amount: must be a number >= 0"] == 1
    assert "4111111111111111" not in everything  # a raw card number is never stored
    assert report.dropped_columns == ("card_number",)


def test_loading_the_same_file_twice_adds_nothing(warehouse, transactions_csv):
    with warehouse.connect() as con:
        load_file(con, TRANSACTIONS, transactions_csv, run_id="run-1")
        again = load_file(con, TRANSACTIONS, transactions_csv, run_id="run-2")
        counts = con.execute(
            f"SELECT (SELECT count(*) FROM raw.transactions), (SELECT count(*) FROM {REJECTED_ROWS})"
        ).fetchone()
    assert (again.rows_loaded, again.rows_duplicate, again.rows_rejected) == (0, 3, 6)
    assert counts == (2, 6)


def test_a_file_missing_a_required_column_is_refused_and_nothing_written(warehouse, tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("transaction_id,is_fraud\nt1,1\n")
    with warehouse.connect() as con:
        with pytest.raises(InputFileError, match="lacks required column\\(s\\) reported_at"):
            load_file(con, FRAUD_LABELS, str(path), run_id="run-1")
        written = con.execute(
            f"SELECT (SELECT count(*) FROM raw.fraud_labels), (SELECT count(*) FROM {REJECTED_ROWS})"
        ).fetchone()
    assert written == (0, 0)


def test_a_missing_file_or_mixed_types_are_refused(warehouse, tmp_path):
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "b.parquet").write_bytes(b"")
    with warehouse.connect() as con:
        with pytest.raises(InputFileError, match="no file matches"):
            load_file(con, TRANSACTIONS, str(tmp_path / "nope.parquet"), run_id="r")
        with pytest.raises(InputFileError, match="use .parquet or .csv files"):
            load_file(con, TRANSACTIONS, str(tmp_path / "*"), run_id="r")
