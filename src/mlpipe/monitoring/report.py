"""What ``mlpipe monitor`` writes: the metrics file, the plots' data and a self-contained HTML report.

Everything is computed before the first file is written, and each file is written atomically.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from mlpipe.core import files
from mlpipe.monitoring.live import Sums
from mlpipe.monitoring.scan import Scan, Served

ERROR_PLOT = "error.json"
DRIFT_PLOT = "drift.json"
REPORT = "report.html"


def daily_error(result: Scan, served: Served, metric: str) -> list[dict[str, Any]]:
    """One row per day of the log with labelled champion predictions: the live metric and the count."""
    rows = []
    for day in sorted(result.days):
        sums = Sums()
        for (arm, _), part in result.days[day].sums.items():
            if arm == "champion":
                sums.merge(part)
        if sums.labelled:
            rows.append({"date": day, metric: sums.metrics(served.task)[metric], "labelled": sums.labelled})
    return rows


def drift_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    measured = {**summary["drift"]["inputs"], "(prediction)": summary["drift"]["prediction"]}
    return [
        {"column": name, "psi": values["psi"]}
        for name, values in sorted(measured.items(), key=lambda kv: -sortable(kv[1]["psi"]))
    ]


def sortable(value: float | None) -> float:
    """A PSI to sort by, largest first: an unmeasured one (None, NaN) after every measured one."""
    return -1.0 if value is None or math.isnan(value) else value


def write(metrics: Path, plots: Path, summary: dict[str, Any], daily: list[dict[str, Any]]) -> None:
    page = render(summary, daily)
    plots.mkdir(parents=True, exist_ok=True)
    files.write_json(plots / ERROR_PLOT, daily)
    files.write_json(plots / DRIFT_PLOT, drift_rows(summary))
    with files.atomic_path(plots / REPORT) as path:
        path.write_text(page, encoding="utf-8")
    metrics.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(metrics, summary)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def render(summary: dict[str, Any], daily: list[dict[str, Any]]) -> str:
    """The report: verdict and alerts, live metrics, drift (bars), comparison, live error by day."""
    window = summary["window"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Monitoring: {html.escape(summary['model'])} {html.escape(summary['version'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#eee}"
        ".bar{background:#4a7;height:10px}.over{background:#c44}</style></head><body>",
        f"<h1>{_cell(summary['model'])} {_cell(summary['version'])}: {_cell(summary['verdict'])}</h1>",
        f"<p>Window {window['start']} to {window['end']} ({window['days']} days);"
        f" {summary['log']['lines']} logged predictions.</p>",
    ]
    if summary["alerts"]:
        parts.append("<ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in summary["alerts"]) + "</ul>")
    parts.append(
        "<h2>Live metrics</h2><table><tr><th>arm</th><th>version</th><th>metric</th><th>value</th></tr>"
    )
    for arm, versions in summary["live"].items():
        for version, entry in versions.items():
            for name, value in entry.items():
                shown = (
                    value
                    if not isinstance(value, dict)
                    else ", ".join(f"{k} {v:.3g}x" for k, v in value.items())
                )
                parts.append(
                    f"<tr><td>{_cell(arm)}</td><td>{_cell(version)}</td><td>{_cell(name)}</td><td>{_cell(shown)}</td></tr>"
                )
    parts.append("</table><h2>Drift (PSI against the training split)</h2><table>")
    parts.append("<tr><th>column</th><th>PSI</th><th>chi-square p</th><th>n</th><th></th></tr>")
    measured = {**summary["drift"]["inputs"], "(prediction)": summary["drift"]["prediction"]}
    for name, values in sorted(measured.items(), key=lambda kv: -sortable(kv[1]["psi"])):
        width = min(300, int(300 * sortable(values["psi"]))) if sortable(values["psi"]) > 0 else 0
        css = "bar over" if sortable(values["psi"]) > summary["limits"]["max_psi"] else "bar"
        psi = "too few" if values.get("too_few") else _cell(values["psi"])
        parts.append(
            f"<tr><td>{_cell(name)}</td><td>{psi}</td>"
            f"<td>{_cell(values['p_value'])}</td><td>{_cell(values.get('n', ''))}</td>"
            f"<td style='text-align:left'><div class='{css}' style='width:{width}px'></div></td></tr>"
        )
    parts.append("</table>")
    if "comparison" in summary:
        parts.append("<h2>Challenger vs champion</h2><table>")
        parts += [
            f"<tr><th>{_cell(k)}</th><td>{_cell(v)}</td></tr>" for k, v in summary["comparison"].items()
        ]
        parts.append("</table>")
    if daily:
        metric = next(k for k in daily[0] if k not in ("date", "labelled"))
        parts.append(f"<h2>Live {_cell(metric)} by day (champion)</h2><table>")
        parts.append(f"<tr><th>day</th><th>{_cell(metric)}</th><th>labelled</th></tr>")
        parts += [
            f"<tr><td>{r['date']}</td><td>{_cell(r[metric])}</td><td>{r['labelled']}</td></tr>" for r in daily
        ]
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
