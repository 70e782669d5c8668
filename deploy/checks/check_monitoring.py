#!/usr/bin/env python3
"""Check deploy/monitoring (run by scripts/check-deploy.sh).

Usage: check_monitoring.py --promtool PATH [--self-test]

- grafana-dashboard.json: the structure Grafana needs to import it (uid, title,
  schemaVersion, a `datasource` variable of type prometheus, unique panel ids, every
  non-row panel on that variable with at least one target, unique refIds, a grid position
  inside the 24 columns and not overlapping another panel);
- every PromQL expression of the dashboard parses (promtool, on a throw-away rule file
  with Grafana's variables replaced by sample values);
- every metric that the dashboard and alerts.yaml name is one the daemon exports: a
  string literal "alf_..." in crates/aws-log-forwarder/src, or one of PENDING below, the
  metrics that the deployment brief (issue 10) asks of the daemon and that other branches
  add. PENDING names not yet in the source are listed as a note, so the list shrinks to
  nothing as they land.

alerts.yaml itself is checked by `promtool check rules` and `promtool test rules` in
check-deploy.sh. --self-test feeds known defects to these checks and fails unless each is
reported. Prints one line per problem; exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/monitoring/grafana-dashboard.json"
ALERTS = ROOT / "deploy/monitoring/alerts.yaml"
SOURCES = ROOT / "crates/aws-log-forwarder/src"

# Metrics the dashboard and alerts use before every branch exporting them has merged
# (names as the deployment brief and those branches spell them).
PENDING = {
    "alf_intake_request_duration_seconds": "intake request latency histogram (intake branch)",
    "alf_dead_letter_events_total": "events written to the dead-letter file, by reason (intake branch)",
    "alf_objects_in_flight": "S3 objects being processed (sqs branch)",
    "alf_sqs_messages_in_flight": "SQS messages being processed (sqs branch)",
    "alf_sqs_oldest_in_flight_message_age_seconds": "age of the oldest message in flight (sqs branch)",
    "alf_sqs_queue_visible_messages": "queue backlog as read by the daemon (sqs branch)",
    "alf_sqs_api_calls_total": "SQS API calls by operation (sqs branch)",
    "alf_sqs_messages_dead_lettered_total": "messages the forwarder dead-lettered, by reason (sqs branch)",
    "alf_events_dropped_total": "events removed by [[processing.drop]] rules, by rule (issue 10 filters)",
}

# Sample values for Grafana's variables, so that promtool can parse the expressions.
GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$namespace": "ns",
    "$job": "job",
}

METRIC = re.compile(r"\balf_[a-z0-9_]+")
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def exported_metrics() -> set[str]:
    names: set[str] = set()
    for path in SOURCES.rglob("*.rs"):
        names.update(re.findall(r'"(alf_[a-z0-9_]+)"', path.read_text(encoding="utf-8")))
    return names


def metric_names(expr: str) -> set[str]:
    return {HISTOGRAM_SUFFIX.sub("", m) for m in METRIC.findall(expr)}


def dashboard_exprs(dash: dict) -> list[tuple[str, str]]:
    out = []
    for p in dash.get("panels", []):
        for t in p.get("targets", []) or []:
            if "expr" in t:
                out.append((f"panel {p.get('id')} '{p.get('title')}' {t.get('refId')}", t["expr"]))
    return out


def structure_errors(dash: dict) -> list[str]:
    errors: list[str] = []
    err = errors.append
    for key in ("uid", "title", "schemaVersion", "panels", "templating"):
        if key not in dash:
            err(f"dashboard: no '{key}'")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if ds is None or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        err("dashboard: no `datasource` variable of type datasource/prometheus")
    ids: set = set()
    cells: dict[tuple[int, int], int] = {}
    for p in dash.get("panels", []):
        pid = p.get("id")
        label = f"panel {pid} '{p.get('title')}'"
        if pid in ids:
            err(f"{label}: duplicate id")
        ids.add(pid)
        if not p.get("title"):
            err(f"{label}: no title")
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in ("x", "y", "w", "h")):
            err(f"{label}: gridPos needs integer x, y, w, h")
            continue
        if g["x"] < 0 or g["x"] + g["w"] > 24 or g["w"] < 1 or g["h"] < 1:
            err(f"{label}: gridPos outside the 24 columns")
        for cx in range(g["x"], g["x"] + g["w"]):
            for cy in range(g["y"], g["y"] + g["h"]):
                if (cx, cy) in cells:
                    err(f"{label}: overlaps panel {cells[(cx, cy)]}")
                    break
                cells[(cx, cy)] = pid
            else:
                continue
            break
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            err(f"{label}: datasource is not the ${{datasource}} variable")
        targets = p.get("targets") or []
        if not targets:
            err(f"{label}: no targets")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            err(f"{label}: refIds missing or not unique")
        for t in targets:
            if not t.get("expr", "").strip():
                err(f"{label} {t.get('refId')}: empty expr")
            if t.get("datasource", p.get("datasource", {})).get("uid") != "${datasource}":
                err(f"{label} {t.get('refId')}: target datasource is not ${{datasource}}")
    return errors


def promql_errors(exprs: list[tuple[str, str]], promtool: str) -> list[str]:
    """Parses every expression with promtool, as recording rules of a throw-away file."""
    rules = []
    for i, (_, expr) in enumerate(exprs):
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        if "$" in expr:
            return [f"{exprs[i][0]}: unknown Grafana variable in {expr!r} (add it to GRAFANA_VARS)"]
        rules.append({"record": f"dashboard:expr_{i}", "expr": expr})
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
        path = f.name
    try:
        run = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    finally:
        pathlib.Path(path).unlink()
    if run.returncode == 0:
        return []
    # promtool names the rule by its index: map it back to the panel.
    out = []
    for line in (run.stdout + run.stderr).splitlines():
        m = re.search(r"group \"dashboard\", rule (\d+)", line)
        where = exprs[int(m.group(1)) - 1][0] if m and 0 < int(m.group(1)) <= len(exprs) else "dashboard"
        if "error" in line.lower() or m:
            out.append(f"{where}: promtool: {line.strip()}")
    return out or [f"promtool check rules failed: {run.stdout}{run.stderr}".strip()]


def metric_errors(exprs: list[tuple[str, str]], known: set[str]) -> list[str]:
    return [
        f"{where}: metric {name} is neither exported by crates/aws-log-forwarder/src nor PENDING"
        for where, expr in exprs
        for name in sorted(metric_names(expr))
        if name not in known
    ]


def alert_exprs(alerts: dict) -> list[tuple[str, str]]:
    return [
        (f"alerts.yaml {r.get('alert') or r.get('record')}", r.get("expr", ""))
        for g in alerts.get("groups", [])
        for r in g.get("rules", [])
    ]


def check(dash: dict, alerts: dict, promtool: str, exported: set[str]) -> list[str]:
    known = exported | set(PENDING)
    exprs = dashboard_exprs(dash)
    return (
        structure_errors(dash)
        + promql_errors(exprs, promtool)
        + metric_errors(exprs + alert_exprs(alerts), known)
    )


def self_test(dash: dict, alerts: dict, promtool: str, exported: set[str]) -> list[str]:
    def panel(d: dict) -> dict:
        return next(p for p in d["panels"] if p.get("type") != "row")

    def set_expr(d: dict, expr: str) -> None:
        panel(d)["targets"][0]["expr"] = expr

    defects = [
        ("unparsable PromQL", lambda d, a: set_expr(d, "sum(rate(alf_events_parsed_total[5m])"), "promtool"),
        ("unknown metric", lambda d, a: set_expr(d, "rate(alf_events_parsd_total[5m])"), "alf_events_parsd_total"),
        ("panel without the datasource variable", lambda d, a: panel(d).__setitem__("datasource", {"uid": "prom"}), "datasource"),
        ("duplicate panel id", lambda d, a: panel(d).__setitem__("id", d["panels"][0]["id"]), "duplicate id"),
        ("overlapping panels", lambda d, a: panel(d).__setitem__("gridPos", dict(d["panels"][0]["gridPos"])), "overlaps"),
        ("alert on an unknown metric", lambda d, a: a["groups"][0]["rules"][0].__setitem__("expr", "alf_nope > 0"), "alf_nope"),
    ]
    if check(dash, alerts, promtool, exported):
        return ["self-test: the unmodified dashboard and alerts do not pass"]
    failures = []
    for what, breaker, expect in defects:
        d, a = copy.deepcopy(dash), copy.deepcopy(alerts)
        breaker(d, a)
        found = check(d, a, promtool, exported)
        if not any(expect in e for e in found):
            failures.append(f"self-test: '{what}' was not reported (got: {found or 'nothing'})")
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--promtool", required=True)
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    alerts = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    exported = exported_metrics()
    problems = check(dash, alerts, args.promtool, exported)
    if args.self_test:
        problems += self_test(dash, alerts, args.promtool, exported)
    for p in problems:
        print(p)
    pending = sorted(set(PENDING) - exported)
    if pending:
        print(f"note: {len(pending)} metrics used here are not in the daemon's source yet: {', '.join(pending)}")
    if not problems:
        n = len(dashboard_exprs(dash))
        print(f"dashboard: {len(dash['panels'])} panels, {n} expressions parse; alerts: metrics known")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
