"""The run report as one self-contained HTML page: inline CSS and SVG charts drawn here.

Nothing is fetched when the page is viewed (no CDN, no script, no web font); a
Content-Security-Policy forbids it, so a stray external reference would show up
as a console error rather than a silent leak. Everything from the bucket
(source names, rules, titles, URLs) is untrusted text and is escaped.

Every chart is an `<svg class="chart" data-chart="<name>">`; every bar a
`<rect class="bar">` with a `<title>` tooltip, which is what the browser test counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from html import escape

from pipeline.core.layout import report_key

# Colour-blind-safe palette (Okabe-Ito), then a red kept for "look here".
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
ALERT = "#C62828"
#: SVG user units; charts scale down to their box (max-width:100%), so half-page charts use
#: a narrower canvas to keep their text legible.
WIDTH = 600
LABEL_W = 180
BAR_H = 14

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;color:#1d2330;
     margin:0;background:#f5f6f8}
main{max-width:1100px;margin:0 auto;padding:20px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:0 0 10px}
.sub{color:#5b6475;margin-bottom:16px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:16px}
.card{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px #0002;min-width:120px}
.card b{display:block;font-size:22px}
.card span{color:#5b6475;font-size:12px}
section{background:#fff;border-radius:8px;padding:14px 16px;margin-bottom:16px;box-shadow:0 1px 2px #0002}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:16px}
.grid section{margin-bottom:0}
.alert{border-left:5px solid #C62828}
.alert li{margin:2px 0}
svg.chart{display:block;max-width:100%;height:auto}
svg text{font-size:12px;fill:#1d2330}
svg text.muted{fill:#5b6475}
svg text.flag{fill:#C62828;font-weight:600}
.legend{display:flex;gap:14px;flex-wrap:wrap;font-size:12px;margin:4px 0 8px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{padding:3px 6px;border-bottom:1px solid #e3e6ea;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
td.flagged{color:#C62828;font-weight:600}
.empty{color:#5b6475;font-style:italic}
.scroll{overflow-x:auto}
td.wrap{white-space:normal;text-align:left;min-width:140px;overflow-wrap:anywhere}
table.fixed{table-layout:fixed}
.status{display:inline-block;padding:0 6px;border-radius:8px;font-weight:600;color:#fff}
.status.ok{background:#009E73}.status.quiet{background:#5b6475}.status.degraded{background:#E69F00;color:#1d2330}
.status.failed{background:#C62828}
ul.urls{margin:4px 0 8px;padding-left:18px;font-size:12px} ul.urls li{overflow-wrap:anywhere}
ul.urls .detail{color:#5b6475}
details{margin:4px 0} summary{cursor:pointer}
#health th,#health td{text-align:left}
svg.spark{display:inline-block;vertical-align:middle}
footer{color:#5b6475;font-size:12px}
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _source_key(report: dict) -> str:
    """The bucket key of the report's JSON (a report without a valid run id was not read from one)."""
    try:
        return report_key(str(report.get("run_id", "")))
    except ValueError:
        return "a run report"


def render_html(report: dict) -> str:
    """The whole page for one report dict (as written by `pipeline.report.run_report.write_report`)."""
    run = escape(str(report.get("run_id", "")))
    flagged = {f["source"] for f in report.get("flags", [])} | set(report.get("failed_sources", {}))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>news-ingest run {run}</title><style>{CSS}</style></head><body><main>",
        f"<h1>news-ingest run {run}</h1>",
        f'<div class="sub">manifest: {escape(str(report.get("manifest") or "none (nothing committed)"))}</div>',
        _cards(report),
        _alerts(report),
        _section("Source health", _health_table(report)),
        _section("Trends over recent runs", _trends(report)),
        '<div class="grid">',
        _section("Pages and articles per source", _pages_articles(report, flagged)),
        _section("Stage timings", _stage_timings(report)),
        _section("Rejects by stage and reason", _rejects(report)),
        _section("How many outlets ran each story", _clusters(report)),
        "</div><br>",
        _section("Metadata per source: share of articles with title, author, date", _metadata(report, flagged)),
        '<div class="grid">',
        _section("Body length per source (words)", _lengths(report, flagged)),
        _section("Boilerplate removed, by rule", _removals(report)),
        "</div><br>",
        _section("Removals per source and rule", _removal_table(report, flagged)),
        _section("Safety net: rules undone because they removed an article's body", _safety_net(report, flagged)),
        _section("Sources", _source_table(report, flagged)),
        _section("Rejected URLs, by reason", _rejected_urls(report)),
        f"<footer>generated from {escape(_source_key(report))}</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------- page parts


def _section(title: str, body: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{body}</section>"


def _cards(report: dict) -> str:
    seconds = sum(v for k, v in report.get("stage_seconds", {}).items() if k != "total") or report.get(
        "stage_seconds", {}
    ).get("total", 0)
    dups = report.get("duplicates", {})
    cards = [
        ("pages fetched", report.get("pages_fetched", 0)),
        ("articles stored", report.get("articles_stored", 0)),
        ("canonical", report.get("canonical_articles", 0)),
        ("duplicates", sum(dups.values())),
        ("rejects", report.get("rejects", 0)),
        ("sources", len(report.get("sources", {}))),
        ("failed sources", _failed_count(report)),
        ("seconds" if "crawl" in report.get("stage_seconds", {}) else "task seconds", f"{seconds:.1f}"),
    ]
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{escape(str(v))}</b><span>{escape(k)}</span></div>' for k, v in cards)
        + "</div>"
    )


def _failed_count(report: dict) -> int:
    health = report.get("health") or {}
    if health:
        return sum(1 for h in health.values() if h.get("status") == "failed")
    return len(report.get("failed_sources", {}))


def _alerts(report: dict) -> str:
    health = report.get("health") or {}
    items = [
        f"<li><b>{escape(h['status'])}:</b> {escape(name)}: {escape('; '.join(h.get('reasons') or []))}</li>"
        for name, h in health.items()
        if h.get("status") in ("failed", "degraded")
    ]
    items += [
        f"<li><b>failed:</b> {escape(name)}: {escape((err or '').strip().splitlines()[-1] if err else '')}</li>"
        for name, err in report.get("failed_sources", {}).items()
        if name not in health
    ]
    items += [f"<li>{escape(f['message'])}</li>" for f in report.get("flags", [])]
    if not items:
        return ""
    return f'<section class="alert" id="alerts"><h2>Look here</h2><ul>{"".join(items)}</ul></section>'


def _legend(names: list[str], colors: list[str] | tuple[str, ...] = PALETTE) -> str:
    return (
        '<div class="legend">'
        + "".join(
            f'<span><i style="background:{colors[i % len(colors)]}"></i>{escape(n)}</span>' for i, n in enumerate(names)
        )
        + "</div>"
    )


def _fmt(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return f"{int(value):,}"


def hbar_chart(
    name: str,
    rows: Sequence[tuple[str, Sequence[float]]],
    series: list[str],
    *,
    highlight: Collection[str] = frozenset(),
    fmt: Callable[[float], str] = _fmt,
    max_value: float | None = None,
    colors: list[str] | None = None,
    row_colors: list[str] | None = None,
    markers: dict[str, list[float | None]] | None = None,
    marker_label: str = "",
) -> str:
    """Horizontal (grouped) bar chart: one group per row, one bar per series value.

    `colors` colour the series; `row_colors` (single-series charts) colour each row instead;
    `markers` ({row label: a value per series}) draws a tick per bar, e.g. the previous run's value.
    """
    if not rows:
        return '<p class="empty">no data</p>'
    k = len(series)
    group_h = k * BAR_H + 10
    height = len(rows) * group_h + 24
    top = max_value if max_value is not None else max((v for _, vals in rows for v in vals), default=0)
    top = top or 1
    plot_w = WIDTH - LABEL_W - 70
    out = [
        f'<svg class="chart" data-chart="{escape(name)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img">'
    ]
    for gi, (label, values) in enumerate(rows):
        y0 = 6 + gi * group_h
        hot = label in highlight
        if hot:
            out.append(
                f'<rect class="highlight" x="0" y="{y0 - 3}" width="{WIDTH}" height="{group_h - 4}" fill="#fdecea"/>'
            )
        cls = "flag" if hot else ""
        out.append(
            f'<text class="{cls}" x="{LABEL_W - 8}" y="{y0 + k * BAR_H / 2 + 4}" '
            f'text-anchor="end">{escape(_clip(label, 26))}{" ⚠" if hot else ""}</text>'
        )
        for si, value in enumerate(values):
            w = plot_w * (value or 0) / top
            w = max(w, 1.5) if value else 0
            y = y0 + si * BAR_H
            color = row_colors[gi] if row_colors else (colors or PALETTE)[si % len(colors or PALETTE)]
            tip = f"{label} · {series[si]}: {fmt(value)}" if k > 1 else f"{label}: {fmt(value)}"
            out.append(
                f'<rect class="bar" x="{LABEL_W}" y="{y}" width="{w:.1f}" height="{BAR_H - 2}" '
                f'fill="{color}"><title>{escape(tip)}</title></rect>'
            )
            out.append(f'<text class="muted" x="{LABEL_W + w + 4:.1f}" y="{y + BAR_H - 3}">{escape(fmt(value))}</text>')
            mark = (markers or {}).get(label, [None] * k)[si]
            if mark is not None:
                mx = LABEL_W + plot_w * mark / top
                out.append(
                    f'<line class="marker" x1="{mx:.1f}" y1="{y - 1}" x2="{mx:.1f}" y2="{y + BAR_H - 1}" '
                    f'stroke="#1d2330" stroke-width="2"><title>{escape(f"{label} · {series[si]}, {marker_label}: {fmt(mark)}")}</title></line>'
                )
    out.append(f'<line x1="{LABEL_W}" y1="0" x2="{LABEL_W}" y2="{height - 18}" stroke="#9aa3b2"/>')
    out.append("</svg>")
    legend = _legend(series, colors or PALETTE) if k > 1 else ""
    if markers and legend:
        legend = legend.replace("</div>", f"<span><b>|</b> {escape(marker_label)}</span></div>")
    return legend + "".join(out)


def vbar_chart(name: str, bars: list[tuple[str, float]], *, x_label: str, y_label: str) -> str:
    """Vertical bar chart (a histogram)."""
    if not bars:
        return '<p class="empty">no data</p>'
    height, base, left = 220, 180, 50
    slot = min(80, (WIDTH - left - 10) / len(bars))
    top = max(v for _, v in bars) or 1
    out = [
        f'<svg class="chart" data-chart="{escape(name)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img">',
        f'<text class="muted" x="4" y="12">{escape(y_label)}</text>',
    ]
    for i, (label, value) in enumerate(bars):
        h = (base - 20) * value / top
        h = max(h, 1.5) if value else 0
        x = left + i * slot + slot * 0.15
        out.append(
            f'<rect class="bar" x="{x:.1f}" y="{base - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{PALETTE[0]}"><title>{escape(f"{label} {x_label}: {_fmt(value)}")}</title></rect>'
        )
        out.append(
            f'<text class="muted" x="{x + slot * 0.35:.1f}" y="{base - h - 4:.1f}" '
            f'text-anchor="middle">{escape(_fmt(value))}</text>'
        )
        out.append(f'<text x="{x + slot * 0.35:.1f}" y="{base + 16}" text-anchor="middle">{escape(label)}</text>')
    out.append(f'<line x1="{left}" y1="{base}" x2="{WIDTH - 10}" y2="{base}" stroke="#9aa3b2"/>')
    out.append(f'<text class="muted" x="{WIDTH / 2}" y="{height - 4}" text-anchor="middle">{escape(x_label)}</text>')
    out.append("</svg>")
    return "".join(out)


def box_chart(name: str, rows: list[tuple[str, dict]], *, highlight: Collection[str] = frozenset()) -> str:
    """One box per row: whiskers min..max, box p25..p75, a tick at the median, on a log scale
    (body lengths span briefs of 50 words to 10,000-word pages: a linear axis hides the boxes)."""
    rows = [(label, w) for label, w in rows if w.get("median") is not None]
    if not rows:
        return '<p class="empty">no data</p>'
    row_h = 24
    height = len(rows) * row_h + 30
    # the axis starts at the power of ten below the shortest body: no empty decades on the left
    low = 10.0 ** math.floor(math.log10(max(1.0, min(w["min"] for _, w in rows))))
    top = max(low * 10, max(w["max"] for _, w in rows))
    span = math.log10(top / low)
    plot_w = WIDTH - LABEL_W - 60

    def x(v: float) -> float:
        return LABEL_W + plot_w * math.log10(max(v, low) / low) / span

    out = [
        f'<svg class="chart" data-chart="{escape(name)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img">'
    ]
    for i, (label, w) in enumerate(rows):
        y = 8 + i * row_h
        hot = label in highlight
        color = ALERT if hot else PALETTE[0]
        out.append(
            f'<text class="{"flag" if hot else ""}" x="{LABEL_W - 8}" y="{y + 12}" '
            f'text-anchor="end">{escape(_clip(label, 26))}{" ⚠" if hot else ""}</text>'
        )
        out.append(f'<line x1="{x(w["min"]):.1f}" y1="{y + 8}" x2="{x(w["max"]):.1f}" y2="{y + 8}" stroke="#9aa3b2"/>')
        bw = max(x(w["p75"]) - x(w["p25"]), 2)
        tip = (
            f"{label}: min {_fmt(w['min'])}, p25 {_fmt(w['p25'])}, median {_fmt(w['median'])}, "
            f"p75 {_fmt(w['p75'])}, max {_fmt(w['max'])} words"
        )
        out.append(
            f'<rect class="bar" x="{x(w["p25"]):.1f}" y="{y + 2}" width="{bw:.1f}" height="12" '
            f'fill="{color}" fill-opacity="0.35" stroke="{color}"><title>{escape(tip)}</title></rect>'
        )
        out.append(
            f'<line x1="{x(w["median"]):.1f}" y1="{y}" x2="{x(w["median"]):.1f}" y2="{y + 16}" '
            f'stroke="{color}" stroke-width="2.5"/>'
        )
        out.append(f'<text class="muted" x="{x(w["max"]) + 4:.1f}" y="{y + 12}">{escape(_fmt(w["median"]))}</text>')
    axis_y = height - 14
    for tick in (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000):
        if low <= tick <= top:
            out.append(f'<line x1="{x(tick):.1f}" y1="4" x2="{x(tick):.1f}" y2="{axis_y - 8}" stroke="#e3e6ea"/>')
            out.append(f'<text class="muted" x="{x(tick):.1f}" y="{axis_y + 8}" text-anchor="middle">{tick:,}</text>')
    out.append("</svg>")
    return (
        '<div class="legend">box: middle half of articles; tick: median (number shown); line: shortest to '
        "longest; log scale</div>" + "".join(out)
    )


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------- the charts


def _pages_articles(report: dict, flagged: set[str]) -> str:
    rows = [
        (name, [s.get("article_pages", s.get("pages_fetched", 0)), s.get("articles", 0), s.get("rejects", 0)])
        for name, s in report.get("sources", {}).items()
    ]
    return hbar_chart(
        "pages-articles",
        rows,
        ["article pages fetched", "articles", "rejects"],
        highlight=flagged,
        colors=[PALETTE[4], PALETTE[0], PALETTE[5]],
    )


def _stage_timings(report: dict) -> str:
    rows = [(stage, [float(sec)]) for stage, sec in report.get("stage_seconds", {}).items()]
    return hbar_chart("stage-seconds", rows, ["seconds"], fmt=lambda v: f"{v:.1f} s")


def _rejects(report: dict) -> str:
    by_stage = report.get("rejects_by_stage")
    if by_stage is None:  # a report from before rejects_by_stage existed
        by_stage = {}
        for key, n in report.get("rejects_by_reason", {}).items():
            stage, _, reason = key.partition("/")
            by_stage.setdefault(stage, {})[reason] = n
    stages = list(by_stage)
    rows, colors = [], []
    for si, stage in enumerate(stages):
        for reason, n in by_stage[stage].items():
            rows.append((f"{stage}/{reason}", [n]))
            colors.append(PALETTE[si % len(PALETTE)])
    if not rows:
        return '<p class="empty">no rejects</p>'
    return _legend(stages) + hbar_chart("rejects", rows, ["rejects"], row_colors=colors)


def _clusters(report: dict) -> str:
    clusters = report.get("clusters") or {}
    hist = clusters.get("outlets_histogram", {})
    bars = [(f"{k} outlet{'s' if k != '1' else ''}", v) for k, v in sorted(hist.items(), key=lambda kv: int(kv[0]))]
    chart = vbar_chart("clusters", bars, x_label="stories run by this many outlets", y_label="stories")
    top = clusters.get("top", [])
    if top:
        rows = "".join(
            f'<tr><td class="wrap">{escape(_clip(c.get("title") or c["cluster_id"], 120))}</td>'
            f"<td>{len(c['outlets'])}</td><td>{c['articles']}</td>"
            f'<td class="wrap">{escape(", ".join(c["outlets"]))}</td></tr>'
            for c in top
        )
        chart += (
            # fixed layout, wrapping cells: the table fits its half-page box, no scrollbar hides a column
            '<table class="fixed"><colgroup><col style="width:46%"><col style="width:15%"><col style="width:14%">'
            "<col></colgroup><tr><th>most widely run stories</th><th>outlets</th><th>copies</th>"
            f"<th>which</th></tr>{rows}</table>"
        )
    return chart


def _metadata(report: dict, flagged: set[str]) -> str:
    fields = ("title_share", "author_share", "published_share")
    rows = [
        (name, [100 * (q.get(f) or 0) for f in fields])
        for name, q in report.get("quality", {}).items()
        if q.get("articles")
    ]
    previous = {
        name: [None if q.get(f) is None else 100 * q[f] for f in fields]
        for name, q in (report.get("previous_quality") or {}).items()
    }
    return hbar_chart(
        "metadata",
        rows,
        ["title", "author", "date"],
        highlight=flagged,
        max_value=100,
        fmt=lambda v: f"{v:.0f}%",
        markers=previous or None,
        marker_label=f"run {report.get('previous_run')}",
    )


def _lengths(report: dict, flagged: set[str]) -> str:
    rows = [(name, q.get("words", {})) for name, q in report.get("quality", {}).items() if q.get("articles")]
    return box_chart("body-length", rows, highlight=flagged)


def _removals(report: dict, top: int = 15) -> str:
    rules = list(report.get("removed_by_rule", {}).items())[:top]
    return hbar_chart("removals", [(rule, [n]) for rule, n in rules], ["removed blocks"])


def _removal_table(report: dict, flagged: set[str], top: int = 10) -> str:
    rules = list(report.get("removed_by_rule", {}))[:top]
    quality = {n: q for n, q in report.get("quality", {}).items() if q.get("articles")}
    if not rules or not quality:
        return '<p class="empty">nothing removed</p>'
    peak = (
        max(
            (q.get("removed_by_rule", {}).get(r, 0) / q["articles"] for q in quality.values() for r in rules), default=0
        )
        or 1
    )
    head = "".join(f'<th title="{escape(r)}">{escape(_clip(_short_rule(r), 18))}</th>' for r in rules)
    body = []
    for name, q in quality.items():
        cells = []
        for r in rules:
            n = q.get("removed_by_rule", {}).get(r, 0)
            alpha = 0.08 + 0.6 * (n / q["articles"]) / peak if n else 0
            style = f' style="background:rgba(0,114,178,{alpha:.2f})"' if n else ""
            per = f"{n / q['articles']:.2f} per article"
            cells.append(f'<td{style} title="{escape(per)}">{n}</td>')
        cls = ' class="flagged"' if name in flagged else ""
        body.append(
            f"<tr><td{cls}>{escape(name)}</td><td>{q.get('removals_per_article') or 0}</td>{''.join(cells)}</tr>"
        )
    return f'<div class="scroll"><table><tr><th>source</th><th>per article</th>{head}</tr>{"".join(body)}</table></div>'


def _safety_net(report: dict, flagged: set[str]) -> str:
    """Per source, the rules the extraction safety net undid (each a page whose body a rule had removed)."""
    body = []
    for name, q in report.get("quality", {}).items():
        undone = q.get("safety_net_by_rule") or {}
        if not undone:
            continue
        rules = ", ".join(f"{rule.removeprefix('safety_net:')} ({n})" for rule, n in undone.items())
        cls = ' class="flagged"' if name in flagged else ""
        body.append(f"<tr><td{cls}>{escape(name)}</td><td>{sum(undone.values())}</td><td>{escape(rules)}</td></tr>")
    if not body:
        return '<p class="empty">no rule undone: no pruning or precision rule removed an article body</p>'
    return f"<table><tr><th>source</th><th>pages</th><th>rules undone (pages)</th></tr>{''.join(body)}</table>"


def _short_rule(rule: str) -> str:
    """Column heads: the last part of a rule name ("html:widget:share" -> "share")."""
    return rule.rstrip(":").rsplit(":", 1)[-1] or rule


def _source_table(report: dict, flagged: set[str]) -> str:
    sources = report.get("sources", {})
    if not sources:
        return '<p class="empty">no sources</p>'
    quality = report.get("quality", {})
    head = (
        "<tr><th>source</th><th>pages</th><th>articles</th><th>canonical</th><th>duplicates</th>"
        "<th>rejects</th><th>yield</th><th>median words</th><th>status</th></tr>"
    )
    rows = []
    for name, s in sources.items():
        q = quality.get(name, {})
        y = q.get("yield")
        shown_yield = "" if y is None else f"{y:.0%}"
        median = q.get("median_words")
        shown_median = "" if median is None else _fmt(median)
        status = ((report.get("health") or {}).get(name) or {}).get("status")
        if status is None:  # a report from before run health
            status = "failed" if s.get("failed") else "ok"
        if status != "failed" and name in flagged:
            status += ", check"
        cls = ' class="flagged"' if name in flagged else ""
        rows.append(
            f"<tr><td{cls}>{escape(name)}</td><td>{s.get('pages_fetched', 0)}</td><td>{s.get('articles', 0)}</td>"
            f"<td>{s.get('canonical', 0)}</td><td>{s.get('duplicates', 0)}</td><td>{s.get('rejects', 0)}</td>"
            f"<td>{shown_yield}</td><td>{shown_median}</td>"
            f"<td{cls}>{status}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


# --------------------------------------------------------------------------- health, trends, rejected URLs


def _status(status: str | None) -> str:
    status = status or "?"
    return f'<span class="status {escape(status)}">{escape(status)}</span>'


def _bytes(n: int | None) -> str:
    if not n:
        return "0"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def _health_table(report: dict) -> str:
    """One row per source: status, reasons, HTTP status mix, network errors, latency, bytes, last success."""
    health = report.get("health") or {}
    if not health:
        return '<p class="empty">no health data (a report from before run health)</p>'
    head = (
        '<table class="fixed" id="health"><colgroup><col style="width:14%"><col style="width:8%">'
        '<col style="width:27%"><col style="width:14%"><col style="width:14%"><col style="width:9%">'
        '<col style="width:14%"></colgroup><tr><th>source</th><th>status</th><th>reasons</th>'
        "<th>HTTP status · errors</th><th>latency p50/p90/p99</th><th>bytes</th><th>last success</th></tr>"
    )
    rows = []
    for name, h in health.items():
        mix = ", ".join(f"{code}: {n}" for code, n in (h.get("http_status") or {}).items())
        errs = ", ".join(f"{k}: {n}" for k, n in (h.get("network_errors") or {}).items())
        rate = h.get("error_rate")
        shown = "; ".join(x for x in (mix, errs) if x) or "no response"
        if rate is not None:
            shown += f" ({rate:.0%} errors)"
        lat = h.get("latency_ms")
        latency = "/".join(f"{lat.get(k, '?')}" for k in ("p50", "p90", "p99")) + " ms" if lat else "n/a"
        since = h.get("failing_since")
        last = escape(str(h.get("last_success") or "never (in the runs kept)"))
        if since and since != report.get("run_id"):
            last += f"<br>failing since {escape(str(since))}"
        rows.append(
            f'<tr data-status="{escape(str(h.get("status")))}"><td class="wrap">{escape(name)}</td>'
            f"<td>{_status(h.get('status'))}</td>"
            f'<td class="wrap">{escape("; ".join(h.get("reasons") or []) or "-")}</td>'
            f'<td class="wrap">{escape(shown)}</td><td>{escape(latency)}</td><td>{_bytes(h.get("bytes"))}</td>'
            f'<td class="wrap">{last}</td></tr>'
        )
    return head + "".join(rows) + "</table>"


def sparkline(name: str, values: Sequence[float | None], *, width: int = 120, height: int = 26) -> str:
    """A tiny line chart of a series (None: no value that run, a gap); the last point is marked."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if not points:
        return '<span class="empty">no data</span>'
    lo = min(v for _, v in points)
    hi = max(v for _, v in points)
    span = (hi - lo) or 1.0
    step = (width - 6) / max(1, len(values) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return 3 + i * step, height - 3 - (height - 6) * ((v - lo) / span if hi > lo else 0.5)

    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in points))
    lx, ly = xy(*points[-1])
    tip = f"{name}: " + ", ".join("–" if v is None else _fmt(v) for v in values)
    return (
        f'<svg class="spark" data-chart="{escape(name)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img"><title>{escape(tip)}</title>'
        f'<polyline fill="none" stroke="{PALETTE[0]}" stroke-width="1.5" points="{coords}"/>'
        f'<circle cx="{lx:.1f}" cy="{ly:.1f}" r="2.5" fill="{PALETTE[5]}"/></svg>'
    )


#: The trend columns: (series key, heading, how the last value is shown).
TREND_COLUMNS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("articles", "articles", _fmt),
    ("rejects", "rejects", _fmt),
    ("yield", "yield", lambda v: f"{v:.0%}"),
    ("duplicates", "duplicates", _fmt),
    ("words", "median words", _fmt),
)


def _trends(report: dict) -> str:
    """Per source, a sparkline per signal over the last runs (oldest left, this run right)."""
    trends = report.get("trends") or {}
    runs = trends.get("runs") or []
    series = trends.get("sources") or {}
    if not series:
        return '<p class="empty">no trend data</p>'
    head = "".join(f"<th>{escape(label)}</th>" for _, label, _ in TREND_COLUMNS)
    rows = []
    for name, s in series.items():
        statuses = "".join(
            f'<i class="dot" title="{escape(str(r))}: {escape(st or "no report")}">{_STATUS_MARK.get(st or "", "·")}</i>'
            for r, st in zip(s.get("run_id", []), s.get("status", []))
        )
        cells = []
        for key, _, fmt in TREND_COLUMNS:
            values = s.get(key) or []
            last = next((v for v in reversed(values) if v is not None), None)
            shown = "" if last is None else f" {escape(fmt(last))}"
            cells.append(f"<td>{sparkline(f'trend-{key}', values)}{shown}</td>")
        rows.append(f'<tr><td class="wrap">{escape(name)}<br><small>{statuses}</small></td>{"".join(cells)}</tr>')
    first = escape(str(runs[0])) if runs else ""
    note = f'<div class="legend">{len(runs)} runs from {first} to this one; the marked point is this run; ● ok ○ quiet ◐ degraded ✕ failed</div>'
    return note + f'<table id="trends"><tr><th>source (status per run)</th>{head}</tr>{"".join(rows)}</table>'


#: Reject reasons shown open (the most common ones); the others are one click away.
OPEN_REASONS = 3

_STATUS_MARK = {"ok": "●", "quiet": "○", "degraded": "◐", "failed": "✕"}


def _rejected_urls(report: dict) -> str:
    """Rejected URLs grouped by stage/reason, each with its detail; capped per reason, linking the JSONL files."""
    groups = report.get("rejected") or {}
    if not groups:
        return '<p class="empty">no rejected URL</p>'
    out = []
    for i, (reason, g) in enumerate(groups.items()):
        items = "".join(
            f'<li><code>{escape(str(r.get("url")))}</code> <span class="detail">({escape(str(r.get("source")))}'
            f"{': ' + escape(_clip(str(r.get('detail')), 200)) if r.get('detail') else ''})</span></li>"
            for r in g.get("samples", [])
        )
        more = g.get("more") or 0
        files = sorted({str(r["rejects_key"]) for r in g.get("samples", []) if r.get("rejects_key")})
        links = ", ".join(f'<a href="../{escape(k)}">{escape(k)}</a>' for k in files)
        tail = f"<li>… and {more} more" + (f" in {links}" if links else "") + "</li>" if more else ""
        out.append(
            # the most common reasons open: an operator sees the lost URLs without a click
            f'<details data-reason="{escape(reason)}"{" open" if i < OPEN_REASONS else ""}><summary>{escape(reason)}: {g.get("count", 0)}</summary>'
            f'<ul class="urls">{items}{tail}</ul></details>'
        )
    files = report.get("rejects_files") or []
    listing = ", ".join(f'<a href="../{escape(k)}">{escape(k)}</a>' for k in files)
    head = f'<div class="legend">every reject, as JSON Lines in the bucket: {listing}</div>' if files else ""
    return head + "".join(out)
