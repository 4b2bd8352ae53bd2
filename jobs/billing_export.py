"""Billing export: a closed month's invoice lines as a file, exactly once per period,
format and destination (`tenantry billing export`, and the `export_billing` job).

What is billed is SQL's (sql/repeatable/600_billing.sql: ops.close_billing_period writes
a month's lines once; late events become adjustment lines of a later month, so an
exported file never goes stale). Writing files is this module's, in four steps:

1. close the month (idempotent) and read the ledger (core.billing_exports): an entry for
   this period, format and destination means "already exported", and nothing changes
   (`force`: a new version, recorded as forced);
2. write the lines to a temporary name in the destination (`.<name>.<random>.partial`),
   flush and fsync the file;
3. rename it to its final name, `billing-<YYYY-MM>-v<version>.<ext>`, and fsync the folder;
4. insert the ledger row (version, sha256, row count).

A crash before 4 leaves no ledger row and no file that looks complete (a `.partial`
file at most, which the next run removes); the next run writes the same version again,
so a file renamed just before a crash is overwritten by the same content (the lines of a
closed month do not change). Two exporters at once write the same bytes, and the ledger's
primary key lets one of them record it.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from db.context import Context, Database
from db.settings import WORKER_ROLE

FORMATS = ("csv", "json", "parquet")
EXTENSIONS = {"csv": "csv", "json": "jsonl", "parquet": "parquet"}
WORKER = Context(actor_type="system", role=WORKER_ROLE)
BATCH_ROWS = 5000
_PERIOD = re.compile(r"(\d{4})-(\d{2})")

#: the exported columns, in order
COLUMNS = (
    "tenant_id",
    "tenant_slug",
    "period",
    "usage_period",
    "kind",
    "metric",
    "plan",
    "quantity",
    "included",
    "billable",
    "unit_price",
    "amount",
    "currency",
)


class ExportError(RuntimeError):
    """The export cannot run; the message says why."""


@dataclass(frozen=True)
class ExportResult:
    status: str  # "exported" or "already_exported"
    period: dt.date
    format: str
    destination: str
    version: int
    file: str
    sha256: str
    rows: int
    forced: bool = False

    def describe(self) -> str:
        month = f"{self.period:%Y-%m}"
        if self.status == "already_exported":
            return (
                f"{month} {self.format}: already exported to {self.destination} as {self.file} "
                f"(version {self.version}, {self.rows} rows, sha256 {self.sha256}); nothing changed "
                "(--force exports a new version)"
            )
        forced = ", forced" if self.forced else ""
        return (
            f"{month} {self.format}: exported {self.rows} rows to {Path(self.destination) / self.file} "
            f"(version {self.version}{forced}, sha256 {self.sha256})"
        )


def parse_period(text: str) -> dt.date:
    """'YYYY-MM' as the month's first day."""
    match = _PERIOD.fullmatch(text.strip())
    if not match or not 1 <= int(match[2]) <= 12:
        raise ExportError(f"a period is a month written YYYY-MM, not {text!r}")
    return dt.date(int(match[1]), int(match[2]), 1)


def previous_month(today: dt.date) -> dt.date:
    first = today.replace(day=1)
    return (first - dt.timedelta(days=1)).replace(day=1)


def file_name(period: dt.date, fmt: str, version: int) -> str:
    return f"billing-{period:%Y-%m}-v{version}.{EXTENSIONS[fmt]}"


# -- rows -------------------------------------------------------------------------------------


def _records(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The SQL rows as exported records (kind: usage, or an adjustment of an earlier month)."""
    for row in rows:
        yield {
            "tenant_id": str(row["tenant_id"]),
            "tenant_slug": row["tenant_slug"],
            "period": row["period"],
            "usage_period": row["usage_period"],
            "kind": "usage" if row["usage_period"] == row["period"] else "adjustment",
            "metric": row["metric"],
            "plan": row["plan_id"],
            "quantity": row["quantity"],
            "included": row["included"],
            "billable": row["billable"],
            "unit_price": row["unit_price"],
            "amount": row["amount"],
            "currency": row["currency"],
        }


def _text(value: Any) -> str:
    if isinstance(value, decimal.Decimal):
        return format(value, "f")  # exact, never 1E+3
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


class _CsvWriter:
    def __init__(self, out: io.BufferedWriter) -> None:
        self.out = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        self.writer = csv.writer(self.out, lineterminator="\n")
        self.writer.writerow(COLUMNS)

    def write(self, batch: list[dict[str, Any]]) -> None:
        self.writer.writerows([[_text(r[c]) for c in COLUMNS] for r in batch])

    def close(self) -> None:
        self.out.flush()
        self.out.detach()


class _JsonLinesWriter:
    """One JSON object per line; money and quantities as decimal strings (exact)."""

    def __init__(self, out: io.BufferedWriter) -> None:
        self.out = out

    def write(self, batch: list[dict[str, Any]]) -> None:
        lines = (json.dumps({c: _text(r[c]) for c in COLUMNS}, separators=(",", ":")) + "\n" for r in batch)
        self.out.write("".join(lines).encode())

    def close(self) -> None:
        self.out.flush()


class _ParquetWriter:
    """Typed columns: dates, decimals for money and quantities (exact), strings."""

    def __init__(self, out: io.BufferedWriter) -> None:
        import pyarrow as pa  # type: ignore[import-untyped]  # imported here: only Parquet needs it
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        self.pa = pa
        quantity = pa.decimal128(38, 12)
        money = pa.decimal128(20, 6)
        self.schema = pa.schema(
            [
                ("tenant_id", pa.string()),
                ("tenant_slug", pa.string()),
                ("period", pa.date32()),
                ("usage_period", pa.date32()),
                ("kind", pa.string()),
                ("metric", pa.string()),
                ("plan", pa.string()),
                ("quantity", quantity),
                ("included", quantity),
                ("billable", quantity),
                ("unit_price", money),
                ("amount", money),
                ("currency", pa.string()),
            ]
        )
        self.writer = pq.ParquetWriter(out, self.schema, compression="zstd")

    def write(self, batch: list[dict[str, Any]]) -> None:
        columns = {c: [r[c] for r in batch] for c in COLUMNS}
        self.writer.write_table(self.pa.Table.from_pydict(columns, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


WRITERS: dict[str, Callable[[io.BufferedWriter], Any]] = {
    "csv": _CsvWriter,
    "json": _JsonLinesWriter,
    "parquet": _ParquetWriter,
}


# -- the export ---------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _latest(db: Database, period: dt.date, fmt: str, destination: str) -> dict[str, Any] | None:
    with db.transaction(WORKER) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM ops.latest_billing_export(%s, %s, %s)", (period, fmt, destination)).fetchone()


def _result(status: str, row: dict[str, Any]) -> ExportResult:
    return ExportResult(
        status=status,
        period=row["period"],
        format=row["format"],
        destination=row["destination"],
        version=row["version"],
        file=row["file_name"],
        sha256=row["sha256"],
        rows=row["row_count"],
        forced=row["forced"],
    )


def export_period(
    db: Database,
    period: dt.date,
    fmt: str,
    dest: Path,
    *,
    force: bool = False,
    pause_after_rows: int | None = None,
) -> ExportResult:
    """Export the closed month `period` as `fmt` into the folder `dest`, exactly once (see
    the module's docstring). `pause_after_rows` (a test's hook: TENANTRY_BILLING_EXPORT_PAUSE_AFTER_ROWS)
    stops the writer for good once that many rows are in the temporary file."""
    if fmt not in FORMATS:
        raise ExportError(f"the format is one of {', '.join(FORMATS)}, not {fmt!r}")
    dest.mkdir(parents=True, exist_ok=True)
    folder = dest.resolve()
    # One exporter per folder at a time (a lock on the folder itself, so nothing is added
    # to it; the process's exit frees it): a second exporter of the month waits here, then
    # finds the first's ledger row. Without it, its removal of crashed runs' temporary
    # files removed the first's live one (FileNotFoundError at the rename; 8 rounds in 10
    # in tests/test_billing_concurrency.py).
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _export_period(db, period, fmt, folder, force=force, pause_after_rows=pause_after_rows)
    finally:
        os.close(fd)  # frees the lock


def _export_period(
    db: Database, period: dt.date, fmt: str, folder: Path, *, force: bool, pause_after_rows: int | None
) -> ExportResult:
    destination = str(folder)

    with db.transaction(WORKER) as conn:
        conn.execute("SELECT * FROM ops.close_billing_period(%s)", (period,))
    latest = _latest(db, period, fmt, destination)
    if latest is not None and not force:
        return _result("already_exported", latest)
    version = latest["version"] + 1 if latest else 1
    name = file_name(period, fmt, version)
    # leftovers of crashed runs of this file: never complete, never recorded
    for stale in folder.glob(f".{name}.*.partial"):
        stale.unlink(missing_ok=True)
    partial = folder / f".{name}.{secrets.token_hex(6)}.partial"

    rows = 0
    try:
        with partial.open("xb") as out:
            writer = WRITERS[fmt](out)
            with db.transaction(WORKER) as conn, conn.cursor(name="billing_lines", row_factory=dict_row) as cur:
                size = min(BATCH_ROWS, pause_after_rows or BATCH_ROWS)
                cur.itersize = size
                cur.execute("SELECT * FROM ops.billing_export_lines(%s)", (period,))
                while batch := cur.fetchmany(size):
                    writer.write(list(_records(batch)))
                    rows += len(batch)
                    if pause_after_rows is not None and rows >= pause_after_rows:
                        _pause(out, rows)
            writer.close()
            out.flush()
            os.fsync(out.fileno())
        final = folder / name
        os.replace(partial, final)
        _fsync_dir(folder)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise

    digest = _sha256(final)
    try:
        with db.transaction(WORKER) as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT * FROM ops.record_billing_export(%s, %s, %s, %s, %s, %s, %s, %s)",
                (period, fmt, destination, version, name, digest, rows, force),
            ).fetchone()
    except psycopg.errors.UniqueViolation:
        # a concurrent exporter recorded this version first, with the same bytes
        latest = _latest(db, period, fmt, destination)
        if latest is None:  # pragma: no cover - the row that conflicted exists
            raise
        return _result("already_exported", latest)
    assert row is not None
    return _result("exported", row)


def _pause(out: io.BufferedWriter, rows: int) -> None:
    """The test hook: the rows so far are on disk in the temporary file, then wait to be killed."""
    out.flush()
    os.fsync(out.fileno())
    print(f"billing export paused after {rows} rows", file=sys.stderr, flush=True)
    while True:
        time.sleep(60)
