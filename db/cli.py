"""`tenantry db …`, `tenantry citus …`, `tenantry platform-admin …` and `tenantry tenant …`:
the database commands for developers, DBAs and operators."""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer

from db import backup, citus_ops, dsn, lifecycle, lint, migrate
from db.friendly import friendly
from db.local import services
from db.local.cli import dev_cluster_app
from db.platform import grant_platform_admin
from db.settings import ANALYST_ROLE, API_ROLE, APP_ROLES, PLATFORM_ADMIN_ROLE, WORKER_ROLE, get_settings

db_app = typer.Typer(help="The database: migrations, status, lint.", no_args_is_help=True)
citus_app = typer.Typer(help="Citus operations.", no_args_is_help=True)
citus_app.add_typer(dev_cluster_app, name="dev-cluster")
platform_admin_app = typer.Typer(help="Platform administrators (operators who manage tenants).", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenant lifecycle: export, erase, import (db/lifecycle.py).", no_args_is_help=True)


def _owner_url() -> str:
    return services.ensure_database(get_settings())


# -- db -----------------------------------------------------------------------------------


@db_app.command("migrate")
@friendly
def db_migrate(
    target: Annotated[str, typer.Argument(help="Revision to upgrade to.")] = "head",
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the SQL it would run (pending revisions, then every repeatable file)."),
    ] = False,
) -> None:
    """Upgrade to a revision and re-apply functions, views and policies."""
    url = _owner_url()
    if dry_run:
        typer.echo(migrate.dry_run(url, target), nl=False)
        return
    migrate.migrate(url, target, get_settings())
    typer.echo(f"migrated to {migrate.status(url).current}")


@db_app.command("downgrade")
@friendly
def db_downgrade(target: Annotated[str, typer.Argument(help="Revision to go down to ('base': all).")] = "-1") -> None:
    """Undo revisions down to a target (default: the last one)."""
    url = _owner_url()
    migrate.downgrade(url, target)
    typer.echo(f"downgraded to {migrate.status(url).current or 'base'}")


@db_app.command("status")
@friendly
def db_status() -> None:
    """Show the database's revision, the code's head, and whether Citus is present."""
    url = _owner_url()
    st = migrate.status(url)
    typer.echo(f"database: {dsn.redacted(url)}")
    typer.echo(f"revision: {st.current or 'none (run `tenantry db migrate`)'}")
    typer.echo(f"head:     {st.head}{'' if st.up_to_date else '  (pending: run `tenantry db migrate`)'}")
    if st.citus_version:
        typer.echo(f"citus:    {st.citus_version}, {st.worker_nodes} worker node(s)")
    else:
        typer.echo("citus:    not installed (single-node PostgreSQL)")


#: `tenantry db dsn NAME`: short names of the DSNs it prints
DSN_NAMES = {
    "owner": None,  # the owner DSN: the role migrations run as (the superuser on the embedded server)
    "api": API_ROLE,
    "worker": WORKER_ROLE,
    "analyst": ANALYST_ROLE,
    "platform-admin": PLATFORM_ADMIN_ROLE,
}


@db_app.command("dsn")
@friendly
def db_dsn(
    name: Annotated[
        str | None,
        typer.Argument(help=f"One of: {', '.join(DSN_NAMES)} (or a role's name). Default: all of them."),
    ] = None,
) -> None:
    """Print DSNs with their passwords: the owner's and each application role's.

    With a name, only that DSN (for scripts: psql "$(tenantry db dsn analyst)"). The
    passwords are the generated ones in the state folder (or those you configured).
    """
    settings = get_settings()
    roles = {**DSN_NAMES, **{role: role for role in DSN_NAMES.values() if role}}
    if name is not None and name not in roles:
        raise LookupError(f"no DSN named {name!r}: use one of {', '.join(DSN_NAMES)}")
    owner = _owner_url()
    urls = {key: dsn.role_url(settings, role) if role else owner for key, role in DSN_NAMES.items()}
    if name is not None:
        typer.echo(urls[next(key for key, role in DSN_NAMES.items() if name in (key, role))])
        return
    for key, url in urls.items():
        typer.echo(f"{key:<15} {url}")
    if dsn.is_embedded(settings, owner):
        missing = [r for r in APP_ROLES if not dsn.explicit_url(settings, r) and not dsn.role_password(settings, r)]
        if missing:
            typer.echo(f"no password yet for {', '.join(missing)}: run `tenantry db migrate`", err=True)


@db_app.command("lint")
@friendly
def db_lint() -> None:
    """Check the schema obeys the multi-tenancy and Citus rules; exit 1 naming each problem."""
    problems = lint.lint(_owner_url())
    for problem in problems:
        typer.echo(str(problem))
    if problems:
        typer.secho(f"{len(problems)} problem(s)", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo("lint: ok")


# -- db backup / restore (db/backup.py; docs/operations.md, Backups) ------------------------


@db_app.command("backup")
@friendly
def db_backup(
    dest: Annotated[
        Path | None, typer.Option("--dest", help="Folder to write the backup (and its manifest) to.")
    ] = None,
    restore_point: Annotated[
        str | None,
        typer.Option(
            "--restore-point",
            help="Citus only: mark a consistent point of the whole cluster in every node's WAL "
            "(citus_create_restore_point), to recover each node's own backup to.",
        ),
    ] = None,
) -> None:
    """Back up the database: pg_dump custom format into DEST, then delete backups there
    older than TENANTRY_BACKUP_RETENTION_DAYS. On Citus: --restore-point NAME."""
    url = _owner_url()
    if restore_point is not None:
        point = backup.create_restore_point(url, restore_point)
        typer.echo(f"restore point {point.name!r} written on every node (coordinator LSN {point.lsn})")
        typer.echo(f"to recover: restore each node's base backup with recovery_target_name = '{point.name}'")
        return
    if dest is None:
        raise backup.BackupError("name the folder: --dest DIR")
    made, deleted = backup.backup(url, dest, get_settings().backup_retention_days)
    manifest = backup.Manifest.read(made)
    typer.echo(f"backup: {made} ({manifest.size} bytes, revision {manifest.revision}, sha256 {manifest.sha256})")
    for old in deleted:
        typer.echo(f"retention: deleted {old.name}")


@db_app.command("restore")
@friendly
def db_restore(
    file: Annotated[Path, typer.Argument(help="A backup of `tenantry db backup` (its .json manifest next to it).")],
    into: Annotated[
        str | None,
        typer.Option("--into", help="New database on this server (default: <database>_restored_<UTC time>)."),
    ] = None,
    target_url: Annotated[
        str | None, typer.Option("--target-url", help="Owner DSN of the database to restore into (any server).")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="If the target database holds tenantry's schemas: DROP it (disconnecting its clients, "
            "the live database too) and re-create it from the backup.",
        ),
    ] = False,
) -> None:
    """Restore a backup into a new database, re-apply its database privileges, lint it."""
    if into and target_url:
        raise LookupError("give --into or --target-url, not both")
    manifest = backup.verify(file)
    url = target_url or backup.with_database(_owner_url(), into or backup.default_restore_name(manifest))
    restored = backup.restore(file, url, force=force)
    if restored.replaced:
        typer.secho(f"dropped the existing database {restored.database!r} (--force)", fg="yellow", err=True)
    typer.echo(f"restored {file.name} into database {restored.database!r} (revision {restored.revision})")
    problems = lint.lint(url)
    for problem in problems:
        typer.echo(str(problem))
    if problems:
        typer.secho(f"lint of the restored database: {len(problems)} problem(s)", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo("lint: ok")


# -- citus: DBA operations (db/citus_ops.py; docs/citus-ops.md) ----------------------------

ModeOption = Annotated[
    citus_ops.TransferMode,
    typer.Option(
        "--mode",
        help="shard_transfer_mode: auto (logical replication, writes go on), force_logical, "
        "block_writes (writes wait for the copy).",
    ),
]


class RebalanceAction(StrEnum):
    start = "start"
    status = "status"
    stop = "stop"


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # not reached


@contextmanager
def _citus() -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the Citus coordinator; exit 1 ("this needs Citus")
    on single-node PostgreSQL."""
    with citus_ops.connect(_owner_url()) as conn:
        yield conn


def _follow(conn: psycopg.Connection[Any], job_id: int | None, what: str) -> None:
    """Show a live progress bar of the newest rebalance job until it ends; exit 1 if it
    did not finish. Ctrl-C stops watching, not the job."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    last: citus_ops.RebalanceProgress | None = None
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
        ) as bar:
            task = bar.add_task(what, total=None)

            def show(progress: citus_ops.RebalanceProgress) -> None:
                nonlocal last
                last = progress
                moving = f" {progress.running[0]}" if progress.running else ""
                bar.update(
                    task,
                    total=progress.total or None,
                    completed=progress.done,
                    description=f"job {progress.job_id} {progress.state}{moving}",
                )

            citus_ops.wait_rebalance(conn, show)
    except KeyboardInterrupt:
        typer.echo(f"stopped watching; job {job_id} goes on in the background (`tenantry citus rebalance stop`)")
        raise typer.Exit(130) from None
    if last is None:
        typer.echo("no rebalance job")
        return
    typer.echo(f"job {last.job_id} {last.state}: {last.done} of {last.total} moves done")
    for error in last.errors:
        typer.secho(f"  {error}", fg="red", err=True)
    if not last.succeeded:
        raise typer.Exit(1)


@citus_app.command("status")
@friendly
def citus_status(
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many of the largest and busiest tenants.")] = 5,
) -> None:
    """Nodes and health, shards and bytes per node, skew, colocation groups, the largest
    and busiest tenants, and the rebalancer's last job."""
    url = _owner_url()
    with _citus() as conn:
        st = citus_ops.status(conn, url, limit=limit)
    typer.echo(f"citus {st.citus_version}, coordinator {dsn.redacted(url)}")
    shards = {s.node: s for s in st.shards}
    typer.echo("nodes:")
    for n in st.nodes:
        health = {True: "healthy", False: "UNREACHABLE", None: "?"}[n.healthy]
        role = "coordinator" if n.is_coordinator else "worker"
        flags = "" if n.active else " INACTIVE"
        flags += "" if n.should_have_shards or n.is_coordinator else " (draining: shouldhaveshards=false)"
        held = shards.get(n.name)
        typer.echo(
            f"  {n.node_id:>3} {n.name:<22} {role:<11} {health:<11} "
            f"{held.shards if held else 0:>5} shards {_size(held.bytes if held else 0):>10}{flags}"
        )
    skew = "n/a (one node, or a node without shards)" if st.skew is None else f"{st.skew:.2f}"
    typer.echo(f"skew (bytes on the fullest node / the emptiest): {skew}")
    typer.echo("colocation groups:")
    for g in st.groups:
        by = "" if g.kind == "reference" else f" by {g.distribution_column}, {g.shard_count} shards"
        names = ", ".join(g.tables[:6]) + (f", … ({len(g.tables)} tables)" if len(g.tables) > 6 else "")
        typer.echo(f"  {g.colocation_id:>3} {g.kind}{by}, {_size(g.bytes)}: {names}")
    if st.counted_tables:
        typer.echo(f"largest tenants (rows in {', '.join(st.counted_tables)}):")
        for t in st.largest:
            alone = "" if t.isolated_bytes is None else f"  isolated, {_size(t.isolated_bytes)}"
            typer.echo(f"  {t.tenant.tenant_id} {t.tenant.slug:<24} {t.rows:>10} rows{alone}")
    if st.isolated:
        typer.echo("isolated tenants (a shard group of their own):")
        for i in st.isolated:
            typer.echo(f"  {i.tenant.tenant_id} {i.tenant.slug:<24} shard {i.shard_id} on {i.node}, {_size(i.bytes)}")
    if st.busiest is None:
        typer.echo(
            "busiest tenants: not tracked (citus.stat_tenants_track = none; ALTER SYSTEM SET "
            "citus.stat_tenants_track = 'all' on every node, then SELECT pg_reload_conf())"
        )
    else:
        typer.echo("busiest tenants (queries in this and the last period, citus_stat_tenants):")
        for b in st.busiest:
            typer.echo(f"  {b.tenant} {b.slug:<24} {b.queries:>10} queries {b.cpu_seconds:>8.2f} s CPU")
    if st.no_replica_identity:
        typer.secho(
            f"cannot move online (no replica identity): {', '.join(st.no_replica_identity)}", fg="yellow", err=True
        )
    if st.rebalance is not None:
        r = st.rebalance
        typer.echo(f"rebalance: job {r.job_id} {r.state}, {r.done} of {r.total} moves done")
    for warning in st.warnings:
        typer.secho(warning, fg="yellow", err=True)


@citus_app.command("add-node")
@friendly
def citus_add_node(
    address: Annotated[str, typer.Argument(help="The new worker as HOST:PORT (PORT defaults to 5432).")],
) -> None:
    """Add a worker (metadata and reference tables are copied to it); then `rebalance`."""
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "5432")
    if not port.isdigit():
        raise LookupError(f"not HOST:PORT: {address!r}")
    with _citus() as conn:
        node = citus_ops.add_node(conn, host, int(port))
    typer.echo(f"node {node.node_id} {node.name} is in the cluster; move shards to it: `tenantry citus rebalance`")


@citus_app.command("drain-node")
@friendly
def citus_drain_node(
    node: Annotated[str, typer.Argument(help="The node: its id or HOST:PORT (see `tenantry citus status`).")],
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until every shard has moved off.")] = False,
    undo: Annotated[bool, typer.Option("--undo", help="Let the node hold shards again (then `rebalance`).")] = False,
    mode: ModeOption = citus_ops.TransferMode.auto,
) -> None:
    """Move every shard off a node in the background (the rebalancer, drain only)."""
    with _citus() as conn:
        found = citus_ops.find_node(conn, node)
        if undo:
            citus_ops.undrain_node(conn, found)
            typer.echo(f"{found.name} may hold shards again; move some back: `tenantry citus rebalance`")
            return
        job = citus_ops.drain_node(conn, found, mode)
        if job is None:
            typer.echo(f"{found.name} holds no shards: nothing to move")
            return
        typer.echo(f"draining {found.name}: job {job}")
        if wait:
            _follow(conn, job, f"draining {found.name}")
        else:
            typer.echo(
                "follow it: `tenantry citus rebalance status` (or `--wait`); stop: `tenantry citus rebalance stop`"
            )


@citus_app.command("rebalance")
@friendly
def citus_rebalance(
    action: Annotated[RebalanceAction, typer.Argument(help="start (the default), status, or stop.")] = (
        RebalanceAction.start
    ),
    wait: Annotated[bool, typer.Option("--wait", help="Show a live progress bar until the job ends.")] = False,
    mode: ModeOption = citus_ops.TransferMode.auto,
) -> None:
    """Even out shards across the workers in the background (citus_rebalance_start)."""
    with _citus() as conn:
        if action is RebalanceAction.stop:
            stopped = citus_ops.rebalance_stop(conn)
            if stopped is None:
                typer.echo("no rebalance is running")
            else:
                typer.echo(f"job {stopped.job_id} {stopped.state}: {stopped.done} of {stopped.total} moves done")
            return
        if action is RebalanceAction.start:
            job = citus_ops.rebalance_start(conn, mode)
            if job is None:
                typer.echo("balanced already: nothing to move")
                return
            typer.echo(f"rebalance: job {job}")
        progress = citus_ops.rebalance_progress(conn)
        if progress is None:
            typer.echo("no rebalance has run")
            return
        if wait:
            _follow(conn, progress.job_id, "rebalance")
            return
        typer.echo(f"job {progress.job_id} {progress.state}: {progress.done} of {progress.total} moves done")
        for line in progress.running:
            typer.echo(f"  moving {line}")
        for error in progress.errors:
            typer.secho(f"  {error}", fg="red", err=True)
        if not progress.finished:
            typer.echo("watch it: `tenantry citus rebalance status --wait`; stop: `tenantry citus rebalance stop`")


@citus_app.command("isolate-tenant")
@friendly
def citus_isolate_tenant(
    tenant: Annotated[str, typer.Argument(help="The tenant's id or slug.")],
    to_node: Annotated[
        str | None, typer.Option(help="Then move its shard group to this node (id or HOST:PORT).")
    ] = None,
    split_mode: Annotated[
        citus_ops.TransferMode,
        typer.Option(
            "--split-mode",
            help="How to split: block_writes (the default: writes to the shard wait for the split, seconds "
            "for a small one); auto/force_logical never finish under updates (citusdata/citus#6790).",
        ),
    ] = citus_ops.TransferMode.block_writes,
    mode: ModeOption = citus_ops.TransferMode.auto,
) -> None:
    """Give a tenant shards of its own (every colocated table), then optionally move them."""
    with _citus() as conn:
        found = citus_ops.resolve_tenant(conn, tenant)
        before = citus_ops.tenant_placement(conn, found)
        placement = citus_ops.isolate_tenant(conn, found, split_mode)
        done = "was already isolated" if before.isolated else "isolated"
        typer.echo(f"{found.slug} ({found.tenant_id}) {done}: shard {placement.shard_id} on {placement.node.name}")
        if to_node is not None:
            _, after = citus_ops.move_tenant(conn, found, citus_ops.find_node(conn, to_node), mode)
            typer.echo(f"{found.slug} is on {after.node.name} ({_size(after.bytes)})")


@citus_app.command("move-tenant")
@friendly
def citus_move_tenant(
    tenant: Annotated[str, typer.Argument(help="The tenant's id or slug.")],
    to_node: Annotated[str, typer.Option(help="The node to move it to (id or HOST:PORT).")],
    mode: ModeOption = citus_ops.TransferMode.auto,
) -> None:
    """Move a tenant's shard group (and the tenants sharing it) to another node."""
    with _citus() as conn:
        found = citus_ops.resolve_tenant(conn, tenant)
        before, after = citus_ops.move_tenant(conn, found, citus_ops.find_node(conn, to_node), mode)
        if before.node.node_id == after.node.node_id:
            typer.echo(f"{found.slug} is on {after.node.name} already")
            return
        shared = f", with {before.other_tenants} other tenant(s) sharing its shard" if before.other_tenants else ""
        typer.echo(f"moved {found.slug} from {before.node.name} to {after.node.name} ({_size(after.bytes)}{shared})")


# -- platform admins ----------------------------------------------------------------------


@platform_admin_app.command("grant")
@friendly
def admin_grant(email: str) -> None:
    """Make an existing user a platform administrator (they log in again to use it)."""
    grant_platform_admin(_owner_url(), email)
    typer.echo(f"{email} is a platform administrator")


@platform_admin_app.command("revoke")
@friendly
def admin_revoke(email: str) -> None:
    """Take platform administration away from a user (effective on their next request)."""
    grant_platform_admin(_owner_url(), email, grant=False)
    typer.echo(f"{email} is no longer a platform administrator")


# -- tenant: lifecycle (db/lifecycle.py; docs/operations.md, "Tenant lifecycle") --------


@contextmanager
def _lifecycle_errors() -> Iterator[None]:
    try:
        yield
    except lifecycle.LifecycleError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None


@tenant_app.command("export")
@friendly
def tenant_export(
    tenant: Annotated[uuid.UUID, typer.Argument(help="The tenant's id.")],
    out: Annotated[Path, typer.Option("--out", help="The JSON-lines file to write (manifest: FILE.manifest.json).")],
) -> None:
    """Write every row of a tenant, from one snapshot, as JSON lines (secret columns left out)."""
    with _lifecycle_errors():
        manifest = lifecycle.export_tenant(_owner_url(), tenant, out)
    typer.echo(f"exported {sum(manifest['tables'].values())} rows to {out} (sha256 {manifest['sha256']})")


@tenant_app.command("erase")
@friendly
def tenant_erase(
    tenant: Annotated[uuid.UUID, typer.Argument(help="The tenant's id.")],
    grace_days: Annotated[
        int | None, typer.Option("--grace-days", min=0, help="Default: TENANTRY_TENANT_ERASE_GRACE_DAYS (30).")
    ] = None,
) -> None:
    """Hard-delete every row of a tenant deleted longer ago than the grace period; keep a tombstone."""
    days = get_settings().tenant_erase_grace_days if grace_days is None else grace_days
    with _lifecycle_errors():
        deleted = lifecycle.erase_tenant(_owner_url(), tenant, timedelta(days=days), getpass.getuser())
    typer.echo(
        f"erased tenant {tenant}: {sum(deleted.values())} rows from {sum(1 for n in deleted.values() if n)} tables"
    )


@tenant_app.command("import")
@friendly
def tenant_import(
    file: Annotated[Path, typer.Argument(help="An export (its FILE.manifest.json beside it).")],
    as_new_tenant: Annotated[
        bool, typer.Option("--as-new-tenant", help="Give the tenant and its rows new ids.")
    ] = False,
) -> None:
    """Restore an export into an empty database, or under a new tenant id."""
    with _lifecycle_errors():
        tenant, counts = lifecycle.import_tenant(_owner_url(), file, as_new_tenant)
    typer.echo(f"imported tenant {tenant}: {sum(counts.values())} rows")
