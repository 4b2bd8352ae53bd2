"""The deployment files (deploy/, terraform/) can't be run here (no Docker, no Azure):
these tests check what can be checked without them. The compose file parses and each
tenantry service runs a command the CLI has; every .tf parses and documents its
variables; every alert rule is complete and names metrics that something exports; the
dashboard's queries too; the exporter's queries run on the project's database."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import hcl2
import psycopg
import pytest
import typer
import typer.main
import yaml
from prometheus_client import REGISTRY

from db import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
TERRAFORM = PROJECT_ROOT / "terraform"
QUERIES = DEPLOY / "postgres-exporter" / "queries.yml"

# -- compose --------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def runs_tenantry(service: dict[str, Any]) -> bool:
    """A service of the project's image (built from deploy/Dockerfile, ENTRYPOINT tenantry)."""
    return "build" in service or str(service.get("image", "")).startswith("tenantry:")


def cli_command(args: list[str]) -> Any:
    """The `tenantry` sub-command that `args` names, walking the typer app's command tree;
    None if there is none. Its options are checked by the command's own parser (an unknown
    one raises typer.TyperException, a UsageError)."""
    from tenantry.cli import app

    command = typer.main.get_command(app)
    rest = list(args)
    while hasattr(command, "get_command") and rest and not rest[0].startswith("-"):
        command = command.get_command(typer.Context(command), rest[0])
        if command is None:
            return None
        rest = rest[1:]
    if hasattr(command, "get_command"):
        return None  # a group alone (`tenantry db`) runs nothing
    command.make_context("tenantry", rest)  # raises on an unknown option or a bad value
    return command


def test_compose_parses_and_has_the_services_of_the_deployment():
    services = compose()["services"]
    for name in ("coordinator", "worker1", "worker2", "redis", "api", "worker", "scheduler", "migrate"):
        assert name in services, name
    assert services["postgres-exporter"]["image"].split("/")[-1].startswith("postgres-exporter")
    for name in ("coordinator", "worker1", "worker2"):
        assert "citusdata/citus" in services[name]["image"]


def test_every_tenantry_service_runs_a_command_the_cli_provides():
    services = {name: s for name, s in compose()["services"].items() if runs_tenantry(s)}
    commands = {name: s["command"] for name, s in services.items()}
    assert {tuple(c[:2]) if c[0] == "db" else (c[0],) for c in commands.values()} == {
        ("serve",),
        ("worker",),
        ("scheduler",),
        ("db", "migrate"),
    }
    for name, args in commands.items():
        assert cli_command(args) is not None, f"{name}: `tenantry {' '.join(args)}` is not a command"


def test_the_cli_walk_refuses_what_the_cli_does_not_have():
    # the check above can fail: an unknown command or option is caught
    assert cli_command(["no-such-command"]) is None
    assert cli_command(["db"]) is None
    with pytest.raises(typer.TyperException, match="no-such-option"):
        cli_command(["serve", "--no-such-option"])


def test_every_long_running_service_has_a_health_check():
    services = compose()["services"]
    one_shot = {name for name, s in services.items() if s.get("restart") == "no"}
    assert one_shot == {"cluster-init", "migrate"}
    for name, service in services.items():
        if name not in one_shot:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert "/ready" in " ".join(services["api"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["coordinator"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_compose_holds_no_secret_values():
    # every password, key and token is an environment variable the operator sets
    text = (DEPLOY / "compose.yaml").read_text()
    keys = re.findall(r"^\s*([A-Z_]*(?:PASSWORD|SECRET|TOKEN|KEYS|CLI_AUTH)[A-Z_]*):\s*(.*)$", text, re.MULTILINE)
    assert len(keys) >= 6
    for key, value in keys:
        assert value.startswith("${"), f"{key}: {value}"
    # and no password written into a URL
    assert re.findall(r"://[^:/@\s]+:(?!\$\{)[^@\s]+@", text) == []


# -- terraform ------------------------------------------------------------------------


def tf_files() -> list[Path]:
    return sorted(TERRAFORM.rglob("*.tf"))


def test_every_terraform_file_parses_and_every_variable_has_a_description_and_type():
    assert len(tf_files()) >= 12  # root and three modules, each with main, variables, outputs
    for path in tf_files():
        with path.open() as f:
            parsed = hcl2.load(f)
        for block in parsed.get("variable", []):
            for name, body in block.items():
                where = f"{path.relative_to(PROJECT_ROOT)}: variable {name}"
                assert str(body.get("description", "")).strip(), f"{where} has no description"
                assert "type" in body, f"{where} has no type"
        for block in parsed.get("output", []):
            for name, body in block.items():
                assert str(body.get("description", "")).strip(), f"{path.name}: output {name} has no description"


def test_terraform_has_the_three_modules_and_marks_secrets_sensitive():
    root = (TERRAFORM / "main.tf").read_text()
    for module in ("citus", "redis", "app"):
        assert f'source = "./modules/{module}"' in re.sub(r"\s+", " ", root)
    assert "azurerm_cosmosdb_postgresql_cluster" in (TERRAFORM / "modules/citus/main.tf").read_text()
    assert "azurerm_redis_cache" in (TERRAFORM / "modules/redis/main.tf").read_text()
    assert "azurerm_container_app" in (TERRAFORM / "modules/app/main.tf").read_text()
    with (TERRAFORM / "variables.tf").open() as f:
        variables = {name: body for block in hcl2.load(f)["variable"] for name, body in block.items()}
    for name, body in variables.items():
        if re.search(r"password|secret|token|keys", name):
            assert body.get("sensitive") is True, f"{name} must be sensitive"
            assert "default" not in body, f"{name} must have no default"


# -- metrics: what exists -------------------------------------------------------------

#: metrics from outside the project and its queries file, each with its source
EXTERNAL_METRICS = {
    "up",  # Prometheus: 1 when a target's scrape succeeded
    "pg_up",  # postgres-exporter: 1 when it reaches PostgreSQL
    "node_filesystem_avail_bytes",  # node-exporter (deploy/compose.yaml, job citus-node-disk)
    "node_filesystem_size_bytes",
}


def project_metrics() -> set[str]:
    """The series names the project's processes export: the API's and the jobs' metrics
    (registered when their modules are imported), with the suffixes Prometheus sees."""
    for module in ("api.pipeline", "api.ratelimit", "api.metering", "jobs.runtime"):
        importlib.import_module(module)  # registers its metrics in prometheus_client's registry

    suffixes = {
        "counter": ["_total", "_created"],
        "histogram": ["_bucket", "_count", "_sum", "_created"],
        "summary": ["_count", "_sum", "_created"],
        "gauge": [""],
        "info": ["_info"],
    }
    names = set()
    for family in REGISTRY.collect():
        names |= {family.name + suffix for suffix in suffixes.get(family.type, [""])}
    return names


def exporter_metrics() -> set[str]:
    """What deploy/postgres-exporter/queries.yml defines: `<query>_<column>` per GAUGE or
    COUNTER column (LABEL columns are labels)."""
    names = set()
    for prefix, query in yaml.safe_load(QUERIES.read_text()).items():
        for column in query["metrics"]:
            ((name, spec),) = column.items()
            if spec["usage"] in ("GAUGE", "COUNTER"):
                names.add(f"{prefix}_{name}")
    return names


def known_metrics() -> set[str]:
    return project_metrics() | exporter_metrics() | EXTERNAL_METRICS


# PromQL words that look like metric names
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "topk", "bottomk", "quantile", "stddev", "stdvar", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression, by a regex, not a parser. Its limits:
    string literals and `{...}` matchers are removed first (so `__name__` matchers are not
    seen), `[...]` ranges and durations too; label lists after by/without/on/ignoring/
    group_left/group_right are removed; an identifier followed by `(` is a function; what
    remains and is not a PromQL keyword or a number is taken as a metric name. Go template
    text ({{ ... }}) must not be passed in."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^{}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = match[1], match[2]
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def test_the_metric_name_regex_finds_names_and_skips_functions_labels_and_keywords():
    expr = (
        'sum by (le, actor) (rate(tenantry_job_lag_seconds_bucket{actor="x", route!~"/a|/b"}[5m]))'
        " / on (actor) group_left clamp_min(avg(other_metric), 1e-9) > 0.5 and up == 0"
    )
    assert metric_names(expr) == {"tenantry_job_lag_seconds_bucket", "other_metric", "up"}


# -- alerts ---------------------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_rule_is_complete():
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["expr"].strip(), rule["alert"]
        assert re.fullmatch(r"\d+[smhd]", str(rule["for"])), f"{rule['alert']}: for {rule.get('for')!r}"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]


def test_the_alerts_cover_what_operations_need():
    exprs = " ".join(rule["expr"] for rule in alert_rules())
    for needed in (
        "tenantry_http_requests_total",  # error rate
        "tenantry_http_request_seconds_bucket",  # p99 latency
        "pg_up",  # database unreachable
        "tenantry_citus_node_reachable",  # a Citus node unreachable
        "tenantry_job_lag_seconds_bucket",  # job lag
        "tenantry_outbox_oldest_undispatched_seconds",  # webhook outbox backlog
        "node_filesystem_avail_bytes",  # disk per Citus node
    ):
        assert needed in exprs, needed


def test_every_metric_an_alert_names_is_exported():
    known = known_metrics()
    unknown = {rule["alert"]: sorted(metric_names(rule["expr"]) - known) for rule in alert_rules()}
    assert {alert: names for alert, names in unknown.items() if names} == {}


def test_the_metric_check_can_fail():
    assert metric_names("rate(tenantry_http_requets_total[5m]) > 0") - known_metrics() == {
        "tenantry_http_requets_total"
    }


# -- the dashboard --------------------------------------------------------------------


def test_the_dashboard_parses_and_its_queries_name_known_metrics():
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    known = known_metrics()
    panels = dashboard["panels"]
    assert len(panels) >= 10
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus"  # the provisioned data source
            assert metric_names(target["expr"]) <= known, (panel["title"], metric_names(target["expr"]) - known)


# -- the exporter's queries -----------------------------------------------------------


def test_the_exporter_queries_run_on_the_project_database(owner_url, is_citus):
    """Each query of queries.yml returns its declared columns (the Citus ones on Citus only)."""
    queries = yaml.safe_load(QUERIES.read_text())
    ran = 0
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for prefix, query in queries.items():
            if prefix.startswith("tenantry_citus") and not is_citus:
                continue
            cursor = conn.execute(query["query"].encode())
            columns = [d.name for d in cursor.description or []]
            assert columns == [next(iter(column)) for column in query["metrics"]], prefix
            rows = cursor.fetchall()
            for row in rows:
                for value, column in zip(row, query["metrics"], strict=True):
                    ((_, spec),) = column.items()
                    if spec["usage"] == "GAUGE":
                        float(value)  # a number the exporter can export
            ran += 1
    assert ran >= 2
