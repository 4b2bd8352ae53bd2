"""Tenant lifecycle (issue 14): export a tenant's rows, erase them, import them back.

Catalog-driven: the tenant tables are every table of schema core with a tenant_id
column that is not a partition child (a partitioned parent covers its partitions), so a
new table is covered without a change here. Their foreign keys give the order: parents
first for export and import, children first for erase.

* Export: one REPEATABLE READ, READ ONLY transaction as the owner (superuser on the
  embedded server, or tenantry_owner with BYPASSRLS: RLS does not hide rows from it),
  each table read through a server-side (named) cursor and written as JSON lines
  `{"table": "core.projects", "row": {...}}`, so memory stays flat in the tenant's size.
  Secret columns (hash, secret, token, password, ciphertext in the name) are left out: an
  export leaves the database. Users are global, not tenant data: the members' public
  fields (user_id, email, name; never a password hash) follow as `core.users` lines
  marked `"reference": true`. A sidecar FILE.manifest.json holds the tables, row counts,
  the sha256 of the data lines and the omitted columns.
* Erase: only a tenant deleted longer ago than the grace period: the rule is SQL's
  (core.assert_tenant_erasable, sql/repeatable/700_lifecycle.sql: TN004, P0002), asked
  first, and it keeps the tenant's row locked until the erase commits. One transaction as the
  connecting superuser (turning triggers off needs one; tenantry_owner would not do on
  Citus, where the SET LOCALs run on the workers as the current user) with
  session_replication_role = replica: the tenant's own triggers (the status
  guard refuses any write of a deleted tenant, audit, outbox, quota counters) do not fire
  on rows that are being destroyed; the audit erase hook's settings are set as well.
  A tombstone (core.tenant_tombstones) keeps the id, when, by whom and the billing totals
  per month; then a catalog-wide check that no table with a tenant_id column holds the id.
* Import: the same replica mode, so the rows go in as they were exported (no audit rows,
  no outbox events, no quota deltas), then ops.reconcile_quotas recounts the tenant in a
  transaction of its own (re-runnable).
  With a new tenant id, the tenant id and every uuid primary key value are rewritten
  everywhere in the file (jsonb payloads included), so foreign keys still match.
  Secret columns that may not be NULL get random values: the API keys, invitation and
  refresh tokens and webhook secrets of an imported tenant cannot be used (re-issue them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

#: words that mark a secret column (the audit log's rule, core.audit_redacts)
SECRET_WORDS = ("hash", "secret", "token", "password", "ciphertext")
FORMAT = 1
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class LifecycleError(RuntimeError):
    """A refused lifecycle operation; the message is for the operator."""


@dataclass(frozen=True)
class Table:
    name: str  # schema-qualified
    columns: tuple[str, ...]
    types: dict[str, str]
    not_null: frozenset[str]
    primary_key: tuple[str, ...]
    parents: frozenset[str]  # tenant tables it references
    global_refs: frozenset[str]  # columns referencing a table outside the tenant set (users)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if any(w in c for w in SECRET_WORDS))

    @property
    def remapped(self) -> tuple[str, ...]:
        """uuid primary-key columns whose values belong to the tenant (not a global user)."""
        return tuple(c for c in self.primary_key if self.types[c] == "uuid" and c not in self.global_refs)


_CATALOG = """
SELECT c.oid::regclass::text AS name,
       array_agg(a.attname::text ORDER BY a.attnum) AS columns,
       array_agg(format_type(a.atttypid, NULL) ORDER BY a.attnum) AS types,
       array_agg(a.attnotnull ORDER BY a.attnum) AS not_null,
       COALESCE((SELECT array_agg(k.attname::text ORDER BY u.ord)
                   FROM pg_constraint p, unnest(p.conkey) WITH ORDINALITY AS u(n, ord)
                   JOIN pg_attribute k ON k.attrelid = c.oid AND k.attnum = u.n
                  WHERE p.conrelid = c.oid AND p.contype = 'p'), '{}') AS primary_key
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
 WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND EXISTS (SELECT 1 FROM pg_attribute t
                WHERE t.attrelid = c.oid AND t.attname = 'tenant_id' AND NOT t.attisdropped)
 GROUP BY c.oid
"""

_FOREIGN_KEYS = """
SELECT f.conrelid::regclass::text AS child, f.confrelid::regclass::text AS parent,
       (SELECT array_agg(a.attname::text) FROM unnest(f.conkey) AS u(n)
          JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = u.n) AS columns
  FROM pg_constraint f
 WHERE f.contype = 'f' AND f.connamespace = %s::regnamespace
"""


def tenant_tables(conn: psycopg.Connection[Any], schema: str = "core") -> list[Table]:
    """The tenant tables of `schema`, parents before children (foreign keys)."""
    rows = conn.execute(_CATALOG, (schema,)).fetchall()
    names = {r[0] for r in rows}
    parents: dict[str, set[str]] = {n: set() for n in names}
    global_refs: dict[str, set[str]] = {n: set() for n in names}
    for child, parent, columns in conn.execute(_FOREIGN_KEYS, (schema,)).fetchall():
        if child not in names:
            continue
        if parent in names:
            if parent != child:
                parents[child].add(parent)
        else:
            global_refs[child].update(c for c in columns if c != "tenant_id")
    tables = {
        name: Table(
            name=name,
            columns=tuple(cols),
            types=dict(zip(cols, types, strict=True)),
            not_null=frozenset(c for c, nn in zip(cols, not_null, strict=True) if nn),
            primary_key=tuple(pk),
            parents=frozenset(parents[name]),
            global_refs=frozenset(global_refs[name]),
        )
        for name, cols, types, not_null, pk in rows
    }
    ordered: list[Table] = []
    done: set[str] = set()
    while len(done) < len(tables):  # Kahn's order, ties by name: deterministic
        ready = sorted(n for n, t in tables.items() if n not in done and t.parents <= done)
        if not ready:
            raise LifecycleError(f"foreign-key cycle among {sorted(set(tables) - done)}")
        for n in ready:
            ordered.append(tables[n])
            done.add(n)
    return ordered


def _line(table: str, row: dict[str, Any], reference: bool = False) -> str:
    body: dict[str, Any] = {"table": table, "row": row}
    if reference:
        body["reference"] = True
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def manifest_path(out: Path) -> Path:
    return out.with_name(out.name + ".manifest.json")


def _owner(conn: psycopg.Connection[Any]) -> None:
    """Act as tenantry_owner when connected as a superuser (or stay the owner role)."""
    if conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,):
        conn.execute("SET LOCAL ROLE tenantry_owner")


def export_tenant(url: str, tenant_id: uuid.UUID, out: Path, batch: int = 1000) -> dict[str, Any]:
    """Write the tenant's rows to `out` (JSON lines) and the manifest beside it."""
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    omitted: dict[str, list[str]] = {}
    with psycopg.connect(url) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        _owner(conn)
        found = conn.execute("SELECT status FROM core.tenants WHERE tenant_id = %s", (tenant_id,)).fetchone()
        if found is None:
            raise LifecycleError(f"no tenant {tenant_id}")
        tables = tenant_tables(conn)
        with out.open("w", encoding="utf-8") as f:
            for table in tables:
                keep = [c for c in table.columns if c not in table.secrets]
                if table.secrets:
                    omitted[table.name] = list(table.secrets)
                query = sql.SQL("SELECT jsonb_build_object({}) FROM {} WHERE tenant_id = %s ORDER BY {}").format(
                    sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(c)) for c in keep),
                    sql.SQL(table.name),  # a regclass text from the catalog: already quoted
                    sql.SQL(", ").join(sql.Identifier(c) for c in (table.primary_key or keep)),
                )
                counts[table.name] = 0
                # a named cursor lives on the server: rows arrive `batch` at a time
                with conn.cursor(name=f"export_{len(counts)}") as cur:
                    cur.itersize = batch
                    cur.execute(query, (tenant_id,))
                    for (row,) in cur:
                        line = _line(table.name, row)
                        digest.update(line.encode())
                        f.write(line)
                        counts[table.name] += 1
            # the members' public fields, for reference (users are global, not tenant data)
            with conn.cursor(name="export_users") as cur:
                cur.execute(
                    "SELECT jsonb_build_object('user_id', u.user_id, 'email', u.email, 'name', u.name)"
                    "  FROM core.users u JOIN core.memberships m USING (user_id)"
                    " WHERE m.tenant_id = %s ORDER BY u.user_id",
                    (tenant_id,),
                )
                counts["core.users"] = 0
                for (row,) in cur:
                    line = _line("core.users", row, reference=True)
                    digest.update(line.encode())
                    f.write(line)
                    counts["core.users"] += 1
        conn.rollback()
    manifest = {
        "format": FORMAT,
        "tenant_id": str(tenant_id),
        "tables": counts,
        "sha256": digest.hexdigest(),
        "omitted_columns": omitted,
        "notes": "secret columns are left out; core.users lines are the members' public fields, for reference",
    }
    manifest_path(out).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def verify_export(path: Path) -> dict[str, Any]:
    """The manifest, after checking the data lines' checksum and counts against it."""
    manifest: dict[str, Any] = json.loads(manifest_path(path).read_text(encoding="utf-8"))
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    with path.open("rb") as f:
        for raw in f:
            digest.update(raw)
            table = json.loads(raw)["table"]
            counts[table] = counts.get(table, 0) + 1
    if digest.hexdigest() != manifest["sha256"]:
        raise LifecycleError(f"{path}: checksum does not match its manifest")
    if {t: n for t, n in manifest["tables"].items() if n} != counts:
        raise LifecycleError(f"{path}: row counts do not match its manifest")
    return manifest


def _citus(conn: psycopg.Connection[Any]) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')").fetchone() == (True,)


def _replica_mode(conn: psycopg.Connection[Any], erasing: uuid.UUID | None = None) -> None:
    """Turn off the tables' own triggers for this transaction (the owner must be a superuser)."""
    if _citus(conn):
        conn.execute("SET LOCAL citus.propagate_set_commands = 'local'")  # SET LOCAL reaches the shards
    conn.execute("SET LOCAL session_replication_role = replica")
    if erasing is not None:
        # the audit log's erase hook (500_audit.sql), should its trigger fire after all
        conn.execute(sql.SQL("SET LOCAL tenantry.erasing_tenant = {}").format(sql.Literal(str(erasing))))


def holders(conn: psycopg.Connection[Any], tenant_id: uuid.UUID) -> dict[str, int]:
    """Every table (any schema but the system's) with a tenant_id column that holds the id."""
    tables = conn.execute(
        """SELECT c.oid::regclass::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
            WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
              AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
            ORDER BY 1"""
    ).fetchall()
    found = {}
    for (name,) in tables:
        (n,) = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE tenant_id = %s").format(sql.SQL(name)), (tenant_id,)
        ).fetchone() or (0,)
        if n:
            found[name] = n
    return found


def erase_tenant(url: str, tenant_id: uuid.UUID, grace: timedelta, erased_by: str) -> dict[str, int]:
    """Delete every row of a tenant deleted longer ago than `grace`; return rows per table."""
    with psycopg.connect(url) as conn:
        # the rule is SQL's (700_lifecycle.sql): TN004 (not deleted, within the grace
        # period, erased already) or P0002 (unknown) refuse, and the tenant's row stays
        # locked until the commit, so nothing changes it or writes under it meanwhile
        state = conn.execute(
            "SELECT deleted_at, plan_id FROM core.assert_tenant_erasable(%s, %s)", (tenant_id, grace)
        ).fetchone()
        assert state is not None  # the function returns the row or raises
        deleted_at, plan_id = state
        # as the connecting superuser, not tenantry_owner: turning triggers off needs one,
        # and on Citus the SET LOCALs run on the workers as the current user
        _replica_mode(conn, erasing=tenant_id)
        billing = conn.execute(
            "SELECT COALESCE(jsonb_agg(b ORDER BY b->>'period', b->>'currency'), '[]') FROM ("
            " SELECT jsonb_build_object('period', period, 'currency', currency, 'amount', sum(amount),"
            "        'lines', count(*)) AS b"
            "   FROM core.invoice_lines WHERE tenant_id = %s GROUP BY period, currency) s",
            (tenant_id,),
        ).fetchone()
        deleted: dict[str, int] = {}
        tables = [t.name for t in reversed(tenant_tables(conn))]
        tables += [t.name for t in reversed(tenant_tables(conn, "analytics"))]  # derived rollups
        for name in tables:
            cur = conn.execute(sql.SQL("DELETE FROM {} WHERE tenant_id = %s").format(sql.SQL(name)), (tenant_id,))
            deleted[name] = cur.rowcount
        conn.execute(
            "INSERT INTO core.tenant_tombstones (erased_tenant_id, erased_by, deleted_at, plan_id, billing)"
            " VALUES (%s, %s, %s, %s, %s)",
            (tenant_id, erased_by, deleted_at, plan_id, Jsonb(billing[0] if billing else [])),
        )
        left = holders(conn, tenant_id)
        if left:
            raise LifecycleError(f"rows of tenant {tenant_id} remain in {left}: nothing was erased")
    return deleted


def _random_secret(type_name: str) -> str:
    """A value nobody knows the preimage of (bytea as its hex text form, for jsonb)."""
    return ("\\x" if type_name == "bytea" else "") + os.urandom(32).hex()


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for raw in f:
            yield json.loads(raw)


def import_tenant(url: str, path: Path, as_new_tenant: bool = False) -> tuple[uuid.UUID, dict[str, int]]:
    """Load an export (checked against its manifest); return the tenant id and rows per table."""
    manifest = verify_export(path)
    old_id = manifest["tenant_id"]
    mapping: dict[str, str] = {}
    with psycopg.connect(url) as conn:
        tables = {t.name: t for t in tenant_tables(conn)}
        if as_new_tenant:
            # first pass: the tenant's own ids (uuid primary keys), each gets a new one
            mapping[old_id] = str(uuid.uuid4())
            for item in _lines(path):
                table = tables.get(item["table"])
                for column in table.remapped if table else ():
                    value = item["row"].get(column)
                    if value and value not in mapping:
                        mapping[value] = str(uuid.uuid4())
        new_id = uuid.UUID(mapping.get(old_id, old_id))
        if conn.execute("SELECT 1 FROM core.tenants WHERE tenant_id = %s", (new_id,)).fetchone():
            raise LifecycleError(f"tenant {new_id} exists: import into an empty database or use --as-new-tenant")
        _replica_mode(conn)  # as the connecting superuser (see erase_tenant)
        counts: dict[str, int] = {}
        with path.open(encoding="utf-8") as f:
            for raw in f:
                if mapping:
                    raw = _UUID.sub(lambda m: mapping.get(m.group(0), m.group(0)), raw)
                item = json.loads(raw)
                name = item["table"]
                # the row goes in as the exported JSON text: the database casts each value
                # to its column's type (numbers keep their digits, timestamps their zone)
                if item.get("reference"):
                    # a member's account: created (without a password) only where it is missing
                    # RETURNING counts what went in: Citus's row count for an INSERT ... SELECT
                    # into a reference table includes the rows the conflict skipped
                    made = conn.execute(
                        "INSERT INTO core.users (user_id, email, name)"
                        " SELECT user_id, email, name FROM jsonb_populate_record(NULL::core.users, %s::jsonb -> 'row')"
                        " ON CONFLICT DO NOTHING RETURNING 1",
                        (raw,),
                    ).fetchall()
                    counts[name] = counts.get(name, 0) + len(made)
                    continue
                table = tables.get(name)
                if table is None:
                    raise LifecycleError(f"{path}: table {name} does not exist here")
                fill = {c: _random_secret(table.types[c]) for c in table.secrets if c in table.not_null}
                columns = [c for c in table.columns if c in item["row"] or c in fill]
                try:
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns}"
                            " FROM jsonb_populate_record(NULL::{table}, (%s::jsonb -> 'row') || %s::jsonb)"
                        ).format(table=sql.SQL(name), columns=sql.SQL(", ").join(map(sql.Identifier, columns))),
                        (raw, Jsonb(fill)),
                    )
                except psycopg.errors.UniqueViolation as exc:
                    # e.g. the slug or an API key prefix of a tenant that is still here (global lookups)
                    diag = exc.diag
                    raise LifecycleError(
                        f"{name}: {diag.message_primary} ({diag.message_detail}): nothing was imported"
                    ) from None
                counts[name] = counts.get(name, 0) + 1
        # the counters recounted in a transaction of their own: on Citus a definer function
        # may not read the shards this transaction wrote as another user (docs/citus.md,
        # fact 16); the import is committed first, and the recount can be re-run
        conn.commit()
        conn.execute("SELECT * FROM ops.reconcile_quotas(%s)", (new_id,))
    return new_id, counts
