"""The verification report: ``index.md`` and a self-contained ``index.html`` (figures embedded)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from mhatheory import results

_KIND_TEXT = {
    "theorem": "inequality that must hold at every probed point",
    "identity": "two computations that must agree to the stated tolerance",
    "sanity": "a guard that the check is not vacuous",
    "tendency": "empirical trend, measured and reported, never gated",
}


_STATUS_TEXT = {
    "PASS": "certified to hold",
    "FAIL": "certified to fail (a bug or a finding)",
    "INCONCLUSIVE": "could not be decided numerically, even after more work (never a pass)",
    "REPORT": "a measured tendency, not gated",
}


def write(rows, timing: dict, out: Path) -> Path:
    """Write ``index.md`` and the self-contained ``index.html`` into ``out``; returns the page."""
    out.mkdir(parents=True, exist_ok=True)
    prov = results.provenance()
    figures = [f for r in rows for f in r.figures]
    counts = {s: sum(r.status == s for r in rows) for s in _STATUS_TEXT}
    header = (f"{len(rows)} checks: " + ", ".join(f"{n} {s}" for s, n in counts.items())
              + f"; device: {prov['device']['backend']} ({prov['device']['device_kind']}), "
              f"x64={prov['device']['x64']}; jax {prov['versions']['jax']}, mhatheory "
              f"{prov['versions']['mhatheory']}; {prov['created_utc']}.")
    legend = ("Kinds: " + "; ".join(f"**{k}**: {v}" for k, v in _KIND_TEXT.items()) + ". "
              "Statuses: " + "; ".join(f"**{k}**: {v}" for k, v in _STATUS_TEXT.items()) + ".")
    times = "Time per group (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items())
    md = ["# mhatheory verification report", "", header, "",
          "| status | kind | check | measured | reference | margin | detail |",
          "|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        md.append(f"| {r.status} | {r.kind} | {r.name} | {r.measured:.4g} | {r.reference:.4g} | "
                  f"{r.margin:.3g} | {r.detail} |")
    md += ["", legend, "", times, ""]
    for f in figures:
        md += [f"![{f}]({f})", ""]
    results.write_text_atomic(out / "index.md", "\n".join(md))

    rows_html = "".join(
        f"<tr class='{r.status.lower()}'><td>{r.status}</td><td>{r.kind}</td>"
        f"<td>{html.escape(r.name)}</td><td>{r.measured:.4g}</td><td>{r.reference:.4g}</td>"
        f"<td>{r.margin:.3g}</td><td>{html.escape(r.detail)}</td></tr>" for r in rows)
    imgs = "".join(
        f"<figure><img src='data:image/png;base64,"
        f"{base64.b64encode((out / f).read_bytes()).decode()}'/><figcaption>{html.escape(f)}"
        f"</figcaption></figure>" for f in figures if (out / f).exists())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>mhatheory verify</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}td,th{{padding:2px 8px;
border-bottom:1px solid #ddd;font-size:13px}}tr.fail td:first-child{{color:#b00;font-weight:bold}}
tr.inconclusive td:first-child{{color:#b60;font-weight:bold}}
tr.pass td:first-child{{color:#070}}img{{max-width:100%}}</style></head><body>
<h1>mhatheory verification report</h1><p>{html.escape(header)}</p>
<table><tr><th>status</th><th>kind</th><th>check</th><th>measured</th><th>reference</th>
<th>margin</th><th>detail</th></tr>{rows_html}</table>
<p>{html.escape(legend).replace("**", "")}</p><p>{html.escape(times)}</p>{imgs}</body></html>"""
    results.write_text_atomic(out / "index.html", page)
    return out / "index.html"
