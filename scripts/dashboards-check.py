#!/usr/bin/env python3
"""Checks the dashboards: the Grafana dashboard (deploy/grafana/movie-platform.json)
and the Prometheus console (deploy/prometheus/consoles/movie-platform.html).

    python3 scripts/dashboards-check.py                 the static checks
    python3 scripts/dashboards-check.py --prometheus URL
        ... and every metric their queries name is one that Prometheus at URL
        has scraped (GET /api/v1/label/__name__/values): a query of a metric
        nobody exports draws an empty panel forever, which no human notices.

Static: the JSON parses, every panel has a unique id, a position and at least
one query, every query and every console expression names at least one metric,
and the extractor itself refuses a query of an unknown metric (its own
fixture), so the live check can fail. One `ok     ...` / `FAILED ...` line per
check (scripts/lib/mp_check.py); exit 1 when any failed.

Python 3 standard library only.
"""

import argparse
import json
import os
import re
import sys
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
import mp_check  # noqa: E402 (found through the path set just above)

ROOT = os.path.dirname(HERE)
GRAFANA = os.path.join(ROOT, "deploy", "grafana", "movie-platform.json")
CONSOLE = os.path.join(ROOT, "deploy", "prometheus", "consoles", "movie-platform.html")

# PromQL words that are not metric names (aggregations, keywords, functions
# are recognised by the "(" that follows them).
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
            "bool", "offset", "inf", "nan", "le"}


def metric_names(expr):
    """The metric names a PromQL expression reads."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)  # label values
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if word.lower() in KEYWORDS or rest.startswith("("):
            continue
        names.add(word)
    return names


def grafana_queries(dash):
    for panel in dash.get("panels", []):
        for t in panel.get("targets", []):
            yield panel.get("title", "?"), t.get("expr", "")


def console_queries(text):
    """PromQL of the console: the Go template's query/args strings and the
    graphs' expr strings (one or a list)."""
    for m in re.finditer(r'\b(?:query|args)\s+"([^"]+)"', text):
        yield "console", m.group(1)
    for m in re.finditer(r"expr:\s*(\[[^\]]*\]|\"[^\"]*\")", text):
        for s in re.findall(r'"([^"]*)"', m.group(1)):
            yield "console graph", s


def live_names(url):
    with urllib.request.urlopen(url.rstrip("/") + "/api/v1/label/__name__/values", timeout=10) as r:
        return set(json.load(r)["data"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prometheus", help="a Prometheus that scrapes every target")
    args = ap.parse_args()
    report = mp_check.Checks("dashboards")

    with open(GRAFANA, encoding="utf-8") as f:
        try:
            dash = json.load(f)
            problem = None
        except ValueError as e:
            dash, problem = {}, f"{GRAFANA}: {e}"
    report.check("dashboards: the Grafana dashboard is valid JSON", problem)
    panels = dash.get("panels", [])
    ids = [p.get("id") for p in panels]
    bad = [p.get("title", "?") for p in panels
           if not p.get("targets") or not all(k in p.get("gridPos", {}) for k in "xywh")]
    report.check(
        f"dashboards: {len(panels)} panels, unique ids, each placed and with a query",
        None if panels and len(set(ids)) == len(ids) and not bad else f"ids {ids}, without a query or position: {bad}",
    )
    with open(CONSOLE, encoding="utf-8") as f:
        console = f.read()
    queries = list(grafana_queries(dash)) + list(console_queries(console))
    empty = [f"{where}: {q}" for where, q in queries if not metric_names(q)]
    report.check(
        f"dashboards: every one of the {len(queries)} queries (Grafana and console) names a metric",
        None if queries and not empty else f"no metric in: {empty}",
    )
    fixture = 'sum by (job) (rate(no_such_metric_total{job="x"}[5m])) / on (job) up'
    report.check(
        "dashboards: the extractor finds the metrics of its fixture, and only them",
        None if metric_names(fixture) == {"no_such_metric_total", "up"} else f"got {metric_names(fixture)}",
    )

    if args.prometheus:
        known = live_names(args.prometheus)
        used = {}
        for where, q in queries:
            for name in metric_names(q):
                used.setdefault(name, where)
        unknown = sorted(n for n in used if n not in known)
        report.check(
            f"dashboards: each of the {len(used)} metrics the queries name is scraped by {args.prometheus}",
            None if not unknown else f"not scraped: {unknown}",
        )
        report.check(
            "dashboards: the live check refuses a metric nobody exports (no_such_metric_total)",
            None if "no_such_metric_total" not in known else "no_such_metric_total is scraped?",
        )
    return report.summary()


if __name__ == "__main__":
    sys.exit(main())
