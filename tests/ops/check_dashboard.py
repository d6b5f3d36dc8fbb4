#!/usr/bin/env python3
"""Checks scripts/monitoring/pgwarden-dashboard.json: valid Grafana JSON (schemaVersion, unique
panel ids, grid positions, the datasource template variable), every query names only metrics
pgwarden exports (read from core/*.cc) and is written out as a Prometheus rules file so that
`promtool check rules` parses every expression.
The alert rules' metric names are checked the same way when their file is given.
Usage: check_dashboard.py DASHBOARD REPO_ROOT RULES_OUT [ALERT_RULES]"""
import glob
import json
import re
import sys

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exported_metrics(root):
    names = set()
    for path in glob.glob(f"{root}/core/**/*.cc", recursive=True):
        if path.endswith("_test.cc"):
            continue
        names.update(re.findall(r"\b(pgwarden_[a-z0-9_]+)", open(path).read()))
    return names


def base_name(name):
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_names(text, where, known, errors):
    for name in sorted(set(re.findall(r"\b(pgwarden_[a-z0-9_]+)", text))):
        base = base_name(name)
        if name in known or base in known:
            continue
        errors.append(f"{where}: unknown metric {name}")


def main():
    dashboard_path, root, rules_out = sys.argv[1:4]
    errors = []
    try:
        dash = json.load(open(dashboard_path))
    except json.JSONDecodeError as e:
        print(f"{dashboard_path}: not JSON: {e}")
        return 1
    for key in ("title", "uid", "schemaVersion", "panels", "templating"):
        if key not in dash:
            errors.append(f"missing top-level {key!r}")
    if not isinstance(dash.get("schemaVersion"), int):
        errors.append("schemaVersion is not a number")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds_var = variables.get("datasource")
    if not ds_var or ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
        errors.append("no Prometheus 'datasource' template variable")
    known = exported_metrics(root)
    ids = set()
    exprs = []
    for panel in dash.get("panels", []):
        title = panel.get("title", "?")
        pid = panel.get("id")
        if pid in ids:
            errors.append(f"panel {title!r}: duplicate id {pid}")
        ids.add(pid)
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")):
            errors.append(f"panel {title!r}: gridPos needs h, w, x, y")
        elif grid["x"] + grid["w"] > 24:
            errors.append(f"panel {title!r}: wider than the 24-column grid")
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            errors.append(f"panel {title!r}: datasource is not ${{datasource}}")
        targets = panel.get("targets") or []
        if not targets:
            errors.append(f"panel {title!r}: no queries")
        for t in targets:
            expr = t.get("expr", "")
            if not expr or not t.get("refId"):
                errors.append(f"panel {title!r}: a target without expr or refId")
                continue
            check_names(expr, f"panel {title!r}", known, errors)
            exprs.append((title, expr))
    if len(sys.argv) > 4:
        rules = sys.argv[4]
        for lineno, line in enumerate(open(rules), 1):
            if not line.lstrip().startswith("#"):
                check_names(line, f"{rules}:{lineno}", known, errors)
    # Grafana's variables, replaced by values PromQL accepts, so that promtool parses each query.
    with open(rules_out, "w") as out:
        out.write("groups:\n  - name: dashboard\n    rules:\n")
        for i, (title, expr) in enumerate(exprs):
            e = expr.replace("$__rate_interval", "5m").replace("$job", "pgwarden")
            e = e.replace("$instance", ".*")
            out.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(e)}\n")
    for e in errors:
        print(f"{dashboard_path}: {e}" if e.startswith("panel") or e.startswith("missing") else e)
    print(f"dashboard: {len(ids)} panels, {len(exprs)} queries, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
