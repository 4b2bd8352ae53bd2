"""`tenantry report usage`: a month's usage as an HTML page with plots, for people who
would rather look at a chart than read a table.

It reads only the analytics schema, as the analyst role (what analysts see, with their
rights and statement timeout), so it is exactly as fresh as the last refresh_analytics
run. The plots are SVG files drawn by matplotlib (Agg: no display needed) beside the HTML,
which links them; the numbers are in the page as tables too.
"""

from __future__ import annotations

import calendar
import datetime as dt
import html
import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: render to files, never to a display
import matplotlib.pyplot as plt
import psycopg
from psycopg.rows import dict_row

#: text stays text in the SVGs (searchable, and smaller than glyph outlines)
plt.rcParams["svg.fonttype"] = "none"

TOP_TENANTS = 10


@dataclass
class UsageReport:
    period: dt.date  # the month's first day
    #: metric -> [(day, value summed over tenants)]
    per_metric: dict[str, list[tuple[dt.date, Decimal]]] = field(default_factory=dict)
    #: metric -> its unit
    units: dict[str, str] = field(default_factory=dict)
    #: the month's totals per metric (sum over tenants of each tenant's month value)
    totals: dict[str, Decimal] = field(default_factory=dict)
    #: [(slug, api calls)] the top tenants by API calls in the month
    top_tenants: list[tuple[str, Decimal]] = field(default_factory=list)
    #: [row of analytics.quota_pressure] near or over a limit now, fullest first
    pressure: list[dict[str, Any]] = field(default_factory=list)
    mrr: list[dict[str, Any]] = field(default_factory=list)
    growth: dict[str, Any] | None = None


def parse_period(period: str) -> dt.date:
    """'YYYY-MM' as the month's first day; ValueError (naming the format) otherwise."""
    if not re.fullmatch(r"\d{4}-\d{2}", period):
        raise ValueError(f"a period is YYYY-MM, not {period!r}")
    year, month = (int(part) for part in period.split("-"))
    if not 1 <= month <= 12:
        raise ValueError(f"a period is YYYY-MM, not {period!r}")
    return dt.date(year, month, 1)


def next_month(day: dt.date) -> dt.date:
    return day + dt.timedelta(days=calendar.monthrange(day.year, day.month)[1])


def collect(url: str, period: dt.date) -> UsageReport:
    """The report's numbers, read from the analytics schema at `url` (the analyst's DSN)."""
    end = next_month(period)
    report = UsageReport(period=period)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        report.units = {r["metric"]: r["unit"] for r in conn.execute("SELECT metric, unit FROM analytics.metrics")}
        per_metric: dict[str, list[tuple[dt.date, Decimal]]] = defaultdict(list)
        for row in conn.execute(
            "SELECT metric, day, sum(value) AS value FROM analytics.usage_daily"
            " WHERE day >= %s AND day < %s GROUP BY metric, day ORDER BY metric, day",
            (period, end),
        ):
            per_metric[row["metric"]].append((row["day"], row["value"]))
        report.per_metric = dict(per_metric)
        report.totals = {
            r["metric"]: r["value"]
            for r in conn.execute(
                "SELECT metric, sum(value) AS value FROM analytics.usage_monthly WHERE month = %s"
                " GROUP BY metric ORDER BY metric",
                (period,),
            )
        }
        report.top_tenants = [
            (r["slug"], r["value"])
            for r in conn.execute(
                "SELECT o.slug, u.value FROM analytics.usage_monthly AS u"
                " JOIN analytics.tenant_overview AS o USING (tenant_id)"
                " WHERE u.metric = 'api_calls' AND u.month = %s ORDER BY u.value DESC, o.slug LIMIT %s",
                (period, TOP_TENANTS),
            )
        ]
        report.pressure = conn.execute(
            "SELECT slug, plan_id, resource, used, reserved, quota_limit, percent_used, over_limit"
            " FROM analytics.quota_pressure WHERE status = 'active' AND (near_limit OR over_limit)"
            " ORDER BY percent_used DESC NULLS FIRST, slug, resource"
        ).fetchall()
        report.mrr = conn.execute("SELECT * FROM analytics.mrr ORDER BY currency").fetchall()
        report.growth = conn.execute("SELECT * FROM analytics.growth_monthly WHERE month = %s", (period,)).fetchone()
    return report


# -- rendering -------------------------------------------------------------------------------


def _plot_usage(report: UsageReport, path: Path) -> None:
    metrics = sorted(report.per_metric)
    fig, axes = plt.subplots(max(len(metrics), 1), 1, figsize=(8, 2.4 * max(len(metrics), 1)), squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics, strict=False):
        days, values = zip(*report.per_metric[metric], strict=True)
        ax.bar(days, [float(v) for v in values], color="#3b6ea8")
        ax.set_title(f"{metric} ({report.units.get(metric, '')}) per day")
        ax.set_xlim(report.period - dt.timedelta(days=1), next_month(report.period))
        ax.tick_params(axis="x", labelrotation=30)
    if not metrics:
        axes[0, 0].text(0.5, 0.5, "no usage in this period", ha="center", va="center")
        axes[0, 0].set_axis_off()
    fig.tight_layout()
    fig.savefig(path, format="svg")
    plt.close(fig)


def _plot_bars(labels: list[str], values: list[float], title: str, path: Path, *, limit: float | None = None) -> None:
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(labels), 2) + 1.2))
    if labels:
        ax.barh(labels[::-1], values[::-1], color="#c0504d" if limit else "#3b6ea8")
        if limit:
            ax.axvline(limit, color="black", linestyle="--", linewidth=1)
    else:
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, format="svg")
    plt.close(fig)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(report: UsageReport, out: Path) -> Path:
    """Write index.html and its SVG plots into `out`; return the HTML's path."""
    out.mkdir(parents=True, exist_ok=True)
    _plot_usage(report, out / "usage_per_metric.svg")
    _plot_bars(
        [slug for slug, _ in report.top_tenants],
        [float(v) for _, v in report.top_tenants],
        f"Top {TOP_TENANTS} tenants by API calls",
        out / "top_tenants.svg",
    )
    _plot_bars(
        [f"{r['slug']} · {r['resource']}" for r in report.pressure[:20]],
        [float(r["percent_used"] or 0) for r in report.pressure[:20]],
        "Quota pressure now: % of the limit used (80 % warns)",
        out / "quota_pressure.svg",
        limit=100.0,
    )
    month = report.period.strftime("%Y-%m")
    growth = report.growth or {}
    sections = [
        f"<h1>Usage report {month}</h1>",
        "<h2>Usage per metric</h2>",
        _table(
            ["metric", "unit", "total"], [[m, report.units.get(m, ""), v] for m, v in sorted(report.totals.items())]
        ),
        '<img src="usage_per_metric.svg" alt="usage per metric and day">',
        "<h2>Top tenants by API calls</h2>",
        _table(["tenant", "API calls"], [[s, v] for s, v in report.top_tenants]),
        '<img src="top_tenants.svg" alt="top tenants by API calls">',
        "<h2>Quota pressure (now)</h2>",
        _table(
            ["tenant", "plan", "resource", "used", "reserved", "limit", "% used", "over"],
            [
                [
                    r["slug"],
                    r["plan_id"],
                    r["resource"],
                    r["used"],
                    r["reserved"],
                    r["quota_limit"],
                    r["percent_used"],
                    "yes" if r["over_limit"] else "",
                ]
                for r in report.pressure
            ],
        ),
        '<img src="quota_pressure.svg" alt="quota pressure">',
        "<h2>Revenue and growth</h2>",
        _table(
            ["currency", "MRR (cents)", "active tenants", "paying tenants"],
            [[r["currency"], r["mrr_cents"], r["active_tenants"], r["paying_tenants"]] for r in report.mrr],
        ),
        _table(
            ["new tenants", "churned", "reactivated", "active at month end"],
            [
                [
                    growth.get("new_tenants", 0),
                    growth.get("churned_tenants", 0),
                    growth.get("reactivated_tenants", 0),
                    growth.get("active_at_month_end", ""),
                ]
            ],
        ),
    ]
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>tenantry usage {month}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .6em;"
        "text-align:right}img{max-width:100%}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def usage_report(url: str, period: str, out: Path) -> Path:
    """Collect and render the report of `period` (YYYY-MM) into `out`."""
    return render(collect(url, parse_period(period)), out)
