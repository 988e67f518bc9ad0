"""One graded submission as ONE self-contained HTML file: a page a TA opens, reads and prints.

``render_html(result)`` takes the grade JSON the grader writes (``autograder.report.result_json``) and
returns the page; ``write_html(result, path)`` writes it atomically. Sections, in reading order:

1. header: the student's file, topic, score x / y with a bar, date, device, seed, grading time;
2. points per graded function;
3. every test, failed ones first (red badge), with its full message and its figures (the student's
   samples beside the reference's, training curves), embedded as ``data:`` PNGs;
4. what the loader reported (cells that did not parse, missing definitions) and the isolation notes.

Everything that comes from a submission (messages, names, figure titles) is HTML-escaped, and a
Content-Security-Policy forbids scripts and any external resource, so a hostile message can neither
inject markup nor make the page load anything. Colours pass WCAG AA contrast; status is also written
as text, so the page reads the same in black and white.

    python -m autograder.html_report result.json report.html
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import html
import json
import re
import sys
from pathlib import Path

from autograder.report import write_atomic

# status -> (badge text, CSS class); failures sort first, then what did not run, then passes
STATUS_BADGE = {"failed": ("FAIL", "bad"), "error": ("ERROR", "bad"), "timeout": ("TIMEOUT", "bad"),
                "skipped": ("SKIPPED", "neutral"), "passed": ("PASS", "good")}
STATUS_ORDER = {"failed": 0, "error": 0, "timeout": 0, "skipped": 1, "passed": 2}
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CSS = """
:root { --good: #1a7f37; --bad: #c62828; --neutral: #595959; --ink: #1f1f1f; --line: #c8c8c8; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: #fff; margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 1.5em; margin: 0 0 .2em; word-break: break-all; }
h2 { font-size: 1.15em; margin: 1.6em 0 .5em; border-bottom: 2px solid var(--line); padding-bottom: .2em; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15em 1em; margin: .6em 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; word-break: break-all; }
.score { font-size: 1.35em; font-weight: 700; margin: .4em 0 .2em; }
.bar { height: 18px; width: 100%; max-width: 480px; border: 1px solid var(--ink); background: #fff; }
.bar > div { height: 100%; }
.bar, .bar > div, .badge { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
table { border-collapse: collapse; width: 100%; margin: .4em 0; }
caption { text-align: left; padding-bottom: .2em; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
thead th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.bad-row > td { background: #fdf0f0; }
.badge { display: inline-block; min-width: 5.5em; text-align: center; font-weight: 700; color: #fff;
         padding: 1px 6px; border-radius: 3px; }
.badge.good { background: var(--good); } .badge.bad { background: var(--bad); }
.badge.neutral { background: var(--neutral); }
.message { white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, Menlo, Consolas, monospace;
           font-size: .9em; margin: 0; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 6px; }
figure { margin: 0; border: 1px solid var(--line); padding: 4px; background: #fff; break-inside: avoid; }
figure img { display: block; max-width: 100%; height: auto; max-height: 360px; }
figcaption { font-size: .85em; text-align: center; }
ul.notes li { word-break: break-word; }
.muted { color: var(--neutral); }
@media print { body { padding: 0; font-size: 11pt; } tr, figure { break-inside: avoid; } }
"""

# no scripts, no network: only inline styles and data: images may load
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(value) -> str:
    """HTML-escaped text of any value (quotes included, so it is safe inside attributes too)."""
    return html.escape("" if value is None else str(value), quote=True)


def _number(value, digits: int = 2) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return _e(value)


def _fraction(score, max_score) -> float:
    """score / max_score clipped to [0, 1]; 0 when there is nothing to score."""
    try:
        score, max_score = float(score), float(max_score)
    except (TypeError, ValueError):
        return 0.0
    return min(max(score / max_score, 0.0), 1.0) if max_score > 0 else 0.0


def _badge(status: str) -> str:
    text, css = STATUS_BADGE.get(status, (str(status).upper(), "neutral"))
    return f'<span class="badge {css}">{_e(text)}</span>'


def _png_data_uri(png) -> str | None:
    """A ``data:image/png;base64,...`` URI, or None when ``png`` is not a base64-encoded PNG."""
    if isinstance(png, (bytes, bytearray)):
        raw = bytes(png)
    elif isinstance(png, str) and _BASE64.fullmatch(png):
        try:
            raw = base64.b64decode(png, validate=False)
        except (binascii.Error, ValueError):
            return None
    else:
        return None
    if not raw.startswith(_PNG_MAGIC):
        return None
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def _figures_html(figures) -> str:
    """The test's figures side by side; an unreadable one is named, never embedded."""
    if not figures:
        return ""
    parts = []
    for index, figure in enumerate(figures):
        figure = figure if isinstance(figure, dict) else {}
        title = figure.get("title") or f"figure {index + 1}"
        uri = _png_data_uri(figure.get("png"))
        if uri is None:
            parts.append(f'<p class="muted">{_e(title)}: not a PNG image, not shown</p>')
            continue
        parts.append(f'<figure><img src="{uri}" alt="{_e(title)}"><figcaption>{_e(title)}</figcaption></figure>')
    return f'<div class="figures">{"".join(parts)}</div>'


def _header_html(result: dict) -> str:
    """File, topic, score with a bar, date, device, seed and time."""
    fraction = _fraction(result.get("score"), result.get("max_score"))
    colour = "var(--good)" if fraction >= 0.999 else "var(--bad)" if fraction < 0.5 else "#8a5a00"
    date = result.get("date") or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notebook = str(result.get("notebook", "?"))
    facts = [("Student file", notebook), ("Topic", result.get("topic", "?")), ("Date", date),
             ("Device", result.get("device", "?")), ("Seed", result.get("seed", "?")),
             ("Grading time", f"{_number(result.get('seconds', 0), 1)} s")]
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    percent = round(100 * fraction)
    return (f"<header><h1>Grade report: {_e(Path(notebook).name)}</h1>"
            f'<p class="score">Score {_number(result.get("score", 0))} / {_number(result.get("max_score", 0))}'
            f" ({percent}%)</p>"
            f'<div class="bar" role="img" aria-label="score {percent} percent">'
            f'<div style="width:{percent}%;background:{colour}"></div></div>'
            f'<dl class="facts">{rows}</dl></header>')


def function_summary(tests: list[dict]) -> list[dict]:
    """Per graded function, in order of first appearance: checks passed / run (skipped ones left out)
    and points / max."""
    summary: dict[str, dict] = {}
    for test in tests:
        row = summary.setdefault(test.get("function", "?"), {"function": test.get("function", "?"), "passed": 0,
                                                             "checks": 0, "score": 0.0, "max_score": 0.0})
        row["checks"] += test.get("status") != "skipped"  # a CUDA variant on a CPU machine was not run
        row["passed"] += test.get("status") == "passed"
        row["score"] += float(test.get("score") or 0.0)
        row["max_score"] += float(test.get("max_score") or 0.0)
    return list(summary.values())


def _summary_html(tests: list[dict]) -> str:
    rows = []
    for row in function_summary(tests):
        complete = row["max_score"] > 0 and row["score"] >= row["max_score"] - 1e-9
        status = "passed" if complete else "failed" if row["max_score"] > 0 else "skipped"
        rows.append(f'<tr><th scope="row">{_e(row["function"])}</th><td>{_badge(status)}</td>'
                    f'<td class="num">{row["passed"]} / {row["checks"]}</td>'
                    f'<td class="num">{_number(row["score"])} / {_number(row["max_score"])}</td></tr>')
    return ("<section><h2>Points per graded function</h2><table><caption class=\"muted\">"
            "a function earns its points check by check</caption><thead><tr><th scope=\"col\">Function</th>"
            "<th scope=\"col\">Status</th><th scope=\"col\">Checks passed</th><th scope=\"col\">Points</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></section>")


def _test_row(test: dict) -> str:
    """One test: its facts in a row, then its message and figures in a full-width row beneath."""
    status = test.get("status", "?")
    css = ' class="bad-row"' if STATUS_ORDER.get(status, 0) == 0 else ""
    visibility = {True: "public", False: "hidden"}.get(test.get("public"), "")
    cells = (f"<td>{_badge(status)}</td><th scope=\"row\">{_e(test.get('name'))}</th>"
             f"<td>{_e(test.get('function'))}</td><td>{_e(test.get('kind'))}</td>"
             f'<td class="num">{_number(test.get("score", 0))} / {_number(test.get("max_score", 0))}</td>'
             f"<td>{_e(test.get('device'))}</td><td>{visibility}</td>"
             f'<td class="num">{_number(test.get("seconds", 0), 1)} s</td>')
    message = test.get("message") or ""
    details = (f'<pre class="message">{_e(message)}</pre>' if message else "") + _figures_html(test.get("figures"))
    row = f"<tr{css}>{cells}</tr>"
    if details:
        row += f'<tr{css}><td></td><td colspan="7">{details}</td></tr>'
    return row


def _tests_html(tests: list[dict]) -> str:
    ordered = sorted(tests, key=lambda t: STATUS_ORDER.get(t.get("status"), 0))  # stable: grader order kept
    head = "".join(f'<th scope="col">{h}</th>' for h in
                   ("Status", "Test", "Function", "Kind", "Points", "Device", "Visibility", "Time"))
    counts = ", ".join(f"{sum(t.get('status') == s for t in tests)} {s}" for s in STATUS_BADGE
                       if any(t.get("status") == s for t in tests))
    return (f'<section><h2>Tests ({_e(counts) or "none run"})</h2><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(_test_row(t) for t in ordered)}</tbody></table></section>")


def _notes_html(title: str, items) -> str:
    items = [i for i in (items or []) if i]
    if not items:
        return ""
    listed = "".join(f"<li>{_e(item)}</li>" for item in items)
    return f'<section><h2>{_e(title)}</h2><ul class="notes">{listed}</ul></section>'


def _load_html(load_report: dict) -> str:
    load_report = load_report or {}
    problems = [f"error: {e}" for e in load_report.get("errors", [])]
    problems += [f"missing definition: {m}" for m in load_report.get("missing", [])]
    return _notes_html("Problems loading the notebook", problems)


def render_html(result: dict) -> str:
    """The whole report page for one grade JSON ``result`` (see the module docstring)."""
    tests = [t for t in result.get("tests", []) if isinstance(t, dict)]
    title = f"Grade report: {Path(str(result.get('notebook', '?'))).name} ({result.get('topic', '?')})"
    body = (_header_html(result) + _summary_html(tests) + _tests_html(tests)
            + _load_html(result.get("load_report"))
            + (_notes_html("Isolation", result.get("isolation")) or
               '<section><h2>Isolation</h2><p class="muted">none reported</p></section>'))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>{body}</body></html>\n")


def write_html(result: dict, path: Path | str) -> Path:
    """Write the report page of ``result`` to ``path`` atomically; returns the path."""
    write_atomic(path, render_html(result))
    return Path(path)


def main(argv=None) -> int:
    """``python -m autograder.html_report RESULT.json OUT.html``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m autograder.html_report RESULT.json OUT.html", file=sys.stderr)
        return 2
    result = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    print(write_html(result, argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
