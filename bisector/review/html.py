"""`bisector report --html`: one self-contained HTML file to attach to an incident ticket.

No script, no stylesheet, font or image from elsewhere: the plot is inline SVG (drawn here, no
matplotlib needed), the style is inline. It holds the answer (culprit, attribution, `git show
--stat`, the params or data diff that fits the axis), the plot of each probe's main number along
the candidates with the threshold, the evidence table (every step, with links to the step logs,
or a note that `bisector cache --prune` removed them), the environment and the commands that
reproduce the search.
"""

from __future__ import annotations

import html
import json
import shlex
from pathlib import Path
from typing import Any, Mapping

from bisector.core.model import Status, Step, Verdict
from bisector.io.git import repo_root
from bisector.io.commits import show_stat
from bisector.journal.logs import PRUNED, log_exists
from bisector.journal.read import SessionSummary, find_session
from bisector.probes.base import main_number, threshold
from bisector.review.report import (
    ROLES, _build, _diff_rows, _first_parent, _subject_of, candidate_order, reproduce_command,
)
from bisector.review.tables import status_of, utc
from bisector.review.text import attribution_sentence

COLORS = {Verdict.GOOD: "#2a9d3a", Verdict.BAD: "#d62728", Verdict.SKIP: "#888888", Verdict.ABORT: "#6a3d9a"}
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}
.good{color:#2a9d3a;font-weight:600}.bad{color:#d62728;font-weight:600}.skip{color:#777}.abort{color:#6a3d9a}
.answer{font-size:1.1em;background:#fff8e6;border-left:4px solid #e0a800;padding:.6em 1em}
.pruned{color:#999;font-style:italic}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


# ------------------------------------------------------------------------ plot
def plot_svg(order: list[str], steps: list[Step], culprit: str | None) -> str:
    """One inline SVG panel per probe: its main number at each probed candidate (oldest left)."""
    pos = {sha: i for i, sha in enumerate(order)}
    series: dict[str, dict[str, Any]] = {}
    for st in steps:
        for o in st.result.observations:
            m = main_number(o)
            if m is None:
                continue
            d = series.setdefault(o.probe, {"label": m[0], "points": [], "limits": []})
            d["points"].append((pos.get(st.commit, -1), m[1], o.verdict, st))
            lim = threshold(o.evidence)
            if lim is not None:
                d["limits"].append(lim)
    if not series:
        return '<svg id="plot" xmlns="http://www.w3.org/2000/svg" width="720" height="40" role="img">' \
               '<text x="10" y="25" font-size="13">No probe reported a number: the table below has the verdicts.</text></svg>'
    w, h, left, right, top, bottom = 760, 200, 60, 20, 24, 34
    n = max(len(order), 1)
    panels = []
    for k, (name, d) in enumerate(sorted(series.items())):
        ys = [p[1] for p in d["points"]] + d["limits"][-1:]
        lo, hi = min(ys), max(ys)
        if hi == lo:
            lo, hi = lo - 1, hi + 1
        pad = (hi - lo) * 0.1
        lo, hi = lo - pad, hi + pad

        def x(i: float) -> float:
            return left + (i + 1.5) / (n + 2) * (w - left - right)

        def y(v: float) -> float:
            return top + (hi - v) / (hi - lo) * (h - top - bottom)

        g = [f'<g transform="translate(0,{k * h})">',
             f'<text x="{left}" y="16" font-size="13" font-weight="600">probe {esc(name)}: {esc(d["label"])}</text>',
             f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="#999"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#999"/>',
             f'<text x="{left - 6}" y="{y(hi - pad):.1f}" font-size="10" text-anchor="end">{hi - pad:.4g}</text>',
             f'<text x="{left - 6}" y="{y(lo + pad):.1f}" font-size="10" text-anchor="end">{lo + pad:.4g}</text>',
             f'<line class="bound" x1="{x(-1):.1f}" y1="{top}" x2="{x(-1):.1f}" y2="{h - bottom}" stroke="#2a9d3a" '
             'stroke-dasharray="2,3"><title>good bound</title></line>',
             f'<line class="bound" x1="{x(n - 1):.1f}" y1="{top}" x2="{x(n - 1):.1f}" y2="{h - bottom}" stroke="#d62728" '
             'stroke-dasharray="2,3"><title>bad bound</title></line>',
             f'<text x="{(left + w - right) / 2}" y="{h - 8}" font-size="11" text-anchor="middle">'
             'candidate (oldest to newest)</text>']
        if culprit in pos:
            cx = x(pos[culprit])
            g.append(f'<line class="culprit" x1="{cx:.1f}" y1="{top}" x2="{cx:.1f}" y2="{h - bottom}" stroke="#000" '
                     f'stroke-dasharray="6,3"><title>culprit {esc(culprit[:10])}</title></line>')
        if d["limits"]:
            ty = y(d["limits"][-1])
            g.append(f'<line class="threshold" x1="{left}" y1="{ty:.1f}" x2="{w - right}" y2="{ty:.1f}" stroke="#e0a800" '
                     f'stroke-dasharray="4,4"><title>threshold {d["limits"][-1]:.4g}</title></line>')
        for i, v, verdict, st in d["points"]:
            g.append(f'<circle class="point" cx="{x(i):.1f}" cy="{y(v):.1f}" r="5" fill="{COLORS.get(verdict, "#888")}">'
                     f'<title>step {st.number} {esc(st.commit[:10])}: {esc(d["label"])} = {v:.4g} ({verdict.value})</title>'
                     '</circle>')
        panels.append("".join(g) + "</g>")
    total = h * len(panels)
    return (f'<svg id="plot" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{total}" viewBox="0 0 {w} {total}" '
            f'role="img" aria-label="each probe\'s main number along the candidates">{"".join(panels)}</svg>')


# ---------------------------------------------------------------------- report
def _log_cell(path: str | None) -> str:
    if not path:
        return ""
    name = Path(path).name
    if log_exists(path):
        return f'<a href="{esc(Path(path).resolve().as_uri())}">{esc(name)}</a>'
    return f'<span class="pruned" title="{esc(path)}">{esc(name)}: {esc(PRUNED)}</span>'


def _table(rows: list[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{esc('(none)' if r.get(c) is None else r.get(c))}</td>" for c in cols)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _answer(repo: Path, s: SessionSummary, info: Any) -> list[str]:
    end = s.outcome
    if end is None:
        return ["<p class=answer>The session is unfinished: run <code>bisector run</code> to resume it.</p>"]
    out: list[str] = []
    culprit = end.culprit
    if end.status is Status.FOUND and culprit:
        what = "data revision" if s.axis == "data" else "commit"
        c = info.get(culprit)
        out.append(f'<p class="answer"><code>{esc(culprit)}</code> is the first bad {what} '
                   f"(probability {end.probability:.2f}).")
        if c:
            out.append(f"<br>{esc(c.subject)}<br><small>{esc(c.author)}, {esc(c.date)}</small>")
        out.append("</p>")
    else:
        out.append(f'<p class="answer"><b>{esc(end.status.value)}:</b> {esc(end.message)}</p>')
        if end.candidates:
            out.append("<p>Remaining candidates:</p><ul>" + "".join(
                f"<li><code>{esc(x)}</code> {esc(info[x].subject if x in info else '')}</li>" for x in end.candidates)
                + "</ul>")
    if end.attribution:
        out.append(f"<p><b>Attribution:</b> {esc(attribution_sentence(end.attribution))}.</p>")
    if culprit and culprit in info:
        out.append(f"<h3>git show --stat</h3><pre>{esc(show_stat(repo, culprit) or '(no file changes)')}</pre>")
        parent = _first_parent(repo, culprit)
        which = end.attribution.culprit_is if end.attribution else None
        diffs = [("Data diff (DVC data inputs)", "data_diff")]
        if s.axis != "data" and which != "data":  # the code (and its params) stayed fixed on the data axis
            diffs.insert(0 if which == "code" else 1, ("Params diff", "params_diff"))
        for title, key in diffs if parent else ():
            try:
                table = _table(_diff_rows(repo, key, parent, culprit))
            except Exception as exc:  # an unreadable file at that commit must not stop the report
                table = f"<p>(could not compute: {esc(str(exc)[:200])})</p>"
            if table:
                out.append(f"<h3>{esc(title)}, parent <code>{esc(parent[:10])}</code> to culprit</h3>{table}")
    return out


def _evidence(s: SessionSummary, subject: Any) -> str:
    rows = ["<tr><th>step</th><th>role</th><th>revision</th><th>subject</th><th>build</th><th>verdict</th>"
            "<th>probes</th><th>logs</th></tr>"]
    for st in s.steps:
        probes = "<br>".join(f"{esc(o.probe)}: <span class={o.verdict.value}>{esc(o.verdict.value)}</span> "
                             f"{esc(o.summary)}" for o in st.result.observations) or "-"
        logs = [_log_cell(st.result.build.log)] + [_log_cell(o.log) for o in st.result.observations]
        rev = st.commit[:10] + (f" (data {st.data_rev[:10]})" if st.data_rev and st.data_rev != st.commit else "")
        notes = "".join(f"<br><small>{esc(n)}</small>" for n in st.result.notes)
        rows.append(f"<tr><td>{st.number}</td><td>{esc(ROLES.get(st.role.value, st.role.value))}</td>"
                    f"<td><code>{esc(rev)}</code></td><td>{esc(subject(st.commit)[:80])}</td><td>{esc(_build(st))}</td>"
                    f"<td class={st.verdict.value}>{esc(st.verdict.value)}</td><td>{probes}{notes}</td>"
                    f"<td>{'<br>'.join(x for x in logs if x)}</td></tr>")
    return '<table id="evidence">' + "".join(rows) + "</table>"


def build_html(repo: Path, s: SessionSummary) -> str:
    info = _subject_of(repo, s)

    def subject(sha: str) -> str:
        c = info.get(sha)
        return c.subject if c else "(commit not in this repository)"

    start, cfg = s.start, s.start.get("config", {})
    culprit = s.outcome.culprit if s.outcome else None
    question = [f"<li><b>Bad:</b> <code>{esc(start['bad'])}</code> {esc(subject(start['bad']))}</li>"]
    question += [f"<li><b>Good:</b> <code>{esc(g)}</code> {esc(subject(g))}</li>" for g in start.get("goods", [])]
    question.append(f"<li><b>Candidates:</b> {esc(start.get('candidates', '?'))}; axis: {esc(s.axis)}</li>")
    for p in cfg.get("probes", {}).get("probes", []):
        shown = {k: v for k, v in p.items() if k not in ("name", "frozen")}
        question.append(f"<li><b>Probe <code>{esc(p.get('name'))}</code>:</b> "
                        f"<code>{esc(json.dumps(shown, sort_keys=True))}</code></li>")
    b = cfg.get("build", {})
    question.append(f"<li><b>Build:</b> <code>{esc(b.get('command') or '(none)')}</code></li>")
    env = start.get("environment", {})
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'; '
        'img-src data:">',
        f"<title>Bisection report: session {esc(s.id)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Bisection report: session {esc(s.id)}</h1>",
        f"<p>Journal <code>{esc(s.path)}</code>; started {esc(utc(start.get('ts')))}; {len(s.steps)} steps; "
        f"status <b>{esc(status_of(s))}</b>.</p>",
        "<h2>The answer</h2>", *_answer(repo, s, info),
        "<h2>The question</h2><ul>", *question, "</ul>",
        "<h2>The evidence</h2>", plot_svg(candidate_order(repo, s), s.steps, culprit),
        _evidence(s, subject),
        "<h2>The environment</h2>", _table([{"": k, "value": v} for k, v in env.items()]),
        "<h2>Reproduce</h2>", f"<pre>{esc(reproduce_command(s))}</pre>",
        f"<p>Re-check the decisions without building:</p><pre>{esc('bisector replay ' + shlex.quote(str(s.path)))}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_html(repo_path: Path, session: str | None, output: Path | str) -> Path:
    """`bisector report --html -o FILE.html`: the report as one self-contained HTML file."""
    repo = repo_root(repo_path)
    s = find_session(repo, session)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_html(repo, s), encoding="utf-8")
    return out
