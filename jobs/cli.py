"""The jobs' commands: `tenantry worker`, `tenantry scheduler`, `tenantry jobs …` and
`tenantry mail …`."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Annotated

import typer

from db.friendly import friendly
from db.local import services
from db.settings import Settings, get_settings

mail_app = typer.Typer(
    help="Outgoing mail (email verification, invitations, password resets), delivered from the outbox.",
    no_args_is_help=True,
)
#: `worker` and `scheduler`, mounted at the top level (tenantry/cli.py)
runner_app = typer.Typer()
jobs_app = typer.Typer(help="The periodic jobs: list them, or enqueue one now.", no_args_is_help=True)

AllowEvicting = Annotated[
    bool,
    typer.Option(
        "--allow-evicting-redis",
        help="Run although Redis's maxmemory-policy may evict keys (queued jobs and API-call counts could be lost).",
    ),
]


def _services(allow_evicting: bool) -> Settings:
    """The settings with the database and Redis URLs filled in (starting what is ours), after
    refusing a Redis that may evict keys (jobs.runtime.check_redis_policy)."""
    from jobs import runtime

    settings = services.up(get_settings())
    client = runtime.redis_client(settings.redis_url or "")
    try:
        runtime.check_redis_policy(
            client, allow_evicting=allow_evicting, warn=lambda m: typer.secho(m, fg="yellow", err=True)
        )
    except runtime.RedisPolicyError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    finally:
        client.close()
    return settings


@runner_app.command("worker")
@friendly
def worker_command(
    processes: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    threads: Annotated[int, typer.Option(min=1, help="Threads per process (jobs run at once in each).")] = 4,
    metrics_port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of the Prometheus /metrics of all processes (0: none).")
    ] = 9191,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics port binds.")] = "127.0.0.1",
    allow_evicting_redis: AllowEvicting = False,
) -> None:
    """Run the job worker (Dramatiq on the project's Redis, as the database's worker role),
    starting the embedded PostgreSQL and a local Redis when not configured. Runs until
    Ctrl-C / SIGTERM (running jobs finish first, up to 30 s)."""
    settings = _services(allow_evicting_redis)
    env = dict(os.environ) | {
        "TENANTRY_DATABASE_URL": settings.database_url or "",
        "TENANTRY_REDIS_URL": settings.redis_url or "",
    }
    if metrics_port:
        # every process writes its metrics to files in this folder (prometheus_client's
        # multiprocess mode); one HTTP server (Dramatiq's, a forked process) serves their sum
        folder = settings.state_dir / "worker-metrics"
        shutil.rmtree(folder, ignore_errors=True)  # the last run's processes are gone
        folder.mkdir(parents=True)
        env |= {
            "PROMETHEUS_MULTIPROC_DIR": str(folder),
            "dramatiq_prom_db": str(folder),
            "dramatiq_prom_host": metrics_host,
            "dramatiq_prom_port": str(metrics_port),
        }
    else:
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    typer.echo(
        f"worker: {processes} process(es) × {threads} threads on {settings.redis_url}"
        + (f"; metrics on http://{metrics_host}:{metrics_port}/" if metrics_port else "")
    )
    sys.stdout.flush()
    # a fresh interpreter: prometheus_client reads its multiprocess folder when imported
    args = ["-m", "dramatiq", "jobs.worker:broker", "--processes", str(processes), "--threads", str(threads)]
    os.execve(sys.executable, [sys.executable, *args, "--worker-shutdown-timeout", "30000"], env)


@runner_app.command("scheduler")
@friendly
def scheduler_command(
    speed: Annotated[
        float, typer.Option(min=0.001, help="Divide every interval by this (the demo and tests: minutes in seconds).")
    ] = 1.0,
    allow_evicting_redis: AllowEvicting = False,
) -> None:
    """Enqueue the periodic jobs (`tenantry jobs list`), each once per tick even when several
    schedulers run. Runs until Ctrl-C / SIGTERM."""
    import signal

    from jobs import runtime, scheduler

    settings = _services(allow_evicting_redis)
    runtime.configure_logging()
    client = runtime.redis_client(settings.redis_url or "")
    broker = runtime.make_broker(settings.redis_url or "")
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    typer.echo(f"scheduler: {len(scheduler.SCHEDULES)} periodic jobs on {settings.redis_url} (speed {speed:g})")
    try:
        scheduler.Scheduler(client, broker, speed=speed).run(stop=lambda: bool(stopping))
    except KeyboardInterrupt:
        pass
    finally:
        broker.close()
        client.close()


@jobs_app.command("list")
def jobs_list() -> None:
    """The periodic jobs and their intervals."""
    from jobs import scheduler

    for item in scheduler.SCHEDULES:
        typer.echo(f"{item.actor:<28} every {item.every_seconds:g} s")


@jobs_app.command("enqueue")
@friendly
def jobs_enqueue(actor: Annotated[str, typer.Argument(help="The job's name (`tenantry jobs list`).")]) -> None:
    """Enqueue one run of a periodic job now (a running worker takes it)."""
    from jobs import runtime, scheduler

    names = [item.actor for item in scheduler.SCHEDULES]
    if actor not in names:
        typer.secho(f"error: no job {actor!r}; the jobs: {', '.join(names)}", fg="red", err=True)
        raise typer.Exit(1)
    settings = services.up(get_settings())
    broker = runtime.make_broker(settings.redis_url or "")
    try:
        message = runtime.enqueue(broker, actor)
    finally:
        broker.close()
    typer.echo(f"{actor}: enqueued ({message.message_id})")


@mail_app.command("deliver")
@friendly
def mail_deliver(
    once: Annotated[bool, typer.Option("--once", help="Deliver what is due now, then exit.")] = False,
    batch: Annotated[int, typer.Option(min=1, max=1000, help="Messages claimed at a time.")] = 20,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between passes (without --once).")] = 5.0,
) -> None:
    """Send queued mail over SMTP (TENANTRY_SMTP_*), or, with no SMTP host, write it as .eml
    files into <state_dir>/mail/. Keeps polling until Ctrl-C, unless --once."""
    from jobs import mail

    settings = get_settings()
    settings = settings.model_copy(update={"database_url": services.ensure_database(settings)})
    report = mail.run(settings, once=once, batch=batch, interval=interval, echo=typer.echo)
    if once and report.failed:
        raise typer.Exit(1)
