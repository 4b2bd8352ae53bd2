"""What tenantry starts locally, as one unit: `tenantry services up|down|status`.

PostgreSQL: the embedded server, unless TENANTRY_DATABASE_URL names another one.
Redis: a local redis-server, unless TENANTRY_REDIS_URL names another one. Each is
started only when missing, and left running for the next command.
"""

from __future__ import annotations

from db.local.embedded import embedded_server
from db.local.redis import LocalRedis
from db.settings import Settings


def local_redis(settings: Settings) -> LocalRedis:
    return LocalRedis(settings.state_dir / "redis", settings.redis_port)


def ensure_database(settings: Settings) -> str:
    """The owner DSN, starting the embedded server and its database when it is ours."""
    if settings.database_url:
        return settings.database_url
    server = embedded_server(settings)
    server.start()
    server.ensure_database(settings.database_name)
    return server.url(settings.database_name)


def ensure_redis(settings: Settings) -> str:
    """The Redis URL, starting the local redis-server when it is ours."""
    if settings.redis_url:
        return settings.redis_url
    server = local_redis(settings)
    server.start()
    return server.url()


def up(settings: Settings) -> Settings:
    """Start what is ours; return the settings with both URLs filled in."""
    return settings.model_copy(update={"database_url": ensure_database(settings), "redis_url": ensure_redis(settings)})


def down(settings: Settings) -> list[str]:
    """Stop what is ours (an external server named by a URL is left alone)."""
    lines = []
    if settings.database_url:
        lines.append("postgresql  external (TENANTRY_DATABASE_URL): left alone")
    else:
        lines.append(f"postgresql  {'stopped' if embedded_server(settings).stop() else 'not running'}")
    if settings.redis_url:
        lines.append("redis       external (TENANTRY_REDIS_URL): left alone")
    else:
        lines.append(f"redis       {'stopped' if local_redis(settings).stop() else 'not running'}")
    return lines


def status(settings: Settings) -> list[str]:
    if settings.database_url:
        postgres = "external (TENANTRY_DATABASE_URL)"
    else:
        server = embedded_server(settings)
        running = server.is_running()
        postgres = f"embedded, {'running' if running else 'stopped'} on 127.0.0.1:{server.port} ({server.home})"
    if settings.redis_url:
        redis = "external (TENANTRY_REDIS_URL)"
    else:
        local = local_redis(settings)
        redis = f"local, {'running' if local.is_running() else 'stopped'} on 127.0.0.1:{local.port} ({local.home})"
    return [f"postgresql  {postgres}", f"redis       {redis}"]
