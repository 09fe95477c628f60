"""The pipeline report as one self-contained HTML page, with plots.

The page needs no other file, no network and no JavaScript: the CSS is inline and every plot is an
inline ``<svg>`` drawn by matplotlib (``matplotlib.figure.Figure`` rendered straight to SVG, so
neither pyplot nor the process-wide backend is touched). Text in the plots stays text
(``svg.fonttype: none``), so labels can be searched and copied. Every plot is a
``<figure id="...">`` with a ``<figcaption>``:

- ``plot-accuracy-size``: held-out accuracy vs size of every stage.
- ``plot-accuracy-latency-<target>``: accuracy vs p50 latency of each ``.tflite`` on a target.
- ``plot-latency-<target>``: latency distribution of each ``.tflite`` on a target.
- ``plot-pareto``: with a sweep (``edgekit.sweep/1``), accuracy vs p50 latency and vs size of
  every candidate, the Pareto front highlighted and connected.

``<target>`` is the target name reduced to ``[A-Za-z0-9_-]`` (``ssh://pi@host`` -> ``ssh-pi-host``).
A figure that was not measured (``null``) is written as "not measured".
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device_bench.atomicio import write_text
from device_bench.result import BenchResult
from edgekit.core.errors import InputError
from edgekit.report_search import search_series
from edgekit.report_stages import StageNotes, conversion_notes, stage_notes
from edgekit.report_types import Entry, Report, TfliteEntry, as_report
from edgekit.report_work import speed_notes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_SCHEMA = "edgekit.report/1"  # same as edgekit.report_types.SCHEMA
SWEEP_SCHEMA = "edgekit.sweep/1"
NOT_MEASURED = "not measured"
NA = "—"

_RC = {"svg.fonttype": "none", "font.size": 8.5, "axes.grid": True, "grid.alpha": 0.3,
       "text.usetex": False}
_SVG_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;color:#1d232b;margin:0;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:1.2em 1.5em 3em;background:#fff}h1{font-size:1.5em}
h2{border-bottom:2px solid #dde2e8;padding-bottom:.2em;margin-top:2em}h3{margin:1.4em 0 .4em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.92em}th{background:#eef1f5}
th,td{border:1px solid #dde2e8;padding:.25em .6em;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}.note,figcaption{color:#4a5561}
.pass{color:#17663a;font-weight:600}.fail{color:#b3261e;font-weight:700}
.badge{display:inline-block;padding:.1em .7em;border-radius:.3em;color:#fff!important}
.badge.pass{background:#17663a}.badge.fail{background:#b3261e}dl.facts dt{font-weight:600}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:.2em 1.2em}dl.facts dd{margin:0}
tr.final td{background:#eaf2fc}tr.front td{background:#fff4e0}
figure{margin:1.2em 0;padding:.5em;border:1px solid #dde2e8}figcaption{font-size:.9em;margin:.4em 0}
figure svg{max-width:100%;height:auto;display:block}tr.front td:first-child{font-weight:700}
"""


# ---------------------------------------------------------------- formatting and HTML helpers
def _fmt(value: Any, fmt: str = "{}") -> str:
    if value is None:
        return NOT_MEASURED
    if isinstance(value, bool):
        return "yes" if value else "no"
    return fmt.format(value)


def _pct(value: float | None) -> str:
    return _fmt(None if value is None else 100.0 * value, "{:.2f} %")


def _kib(n: float | None) -> str:
    return _fmt(None if n is None else n / 1024.0, "{:.1f}")


def _ms(value: float | None) -> str:
    return _fmt(value, "{:.4g}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "target"


Cell = str | tuple[str, str]  # plain text, or (plain text, css class)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Cell]],
           row_classes: Sequence[str] | None = None) -> str:
    """An HTML table; every cell is plain text and is escaped here."""
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
           + "</tr></thead>", "<tbody>"]
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes and row_classes[i] else ""
        cells = []
        for cell in row:
            text, css = cell if isinstance(cell, tuple) else (cell, "")
            attr = f' class="{css}"' if css else ""
            cells.append(f"<td{attr}>{html.escape(str(text))}</td>")
        out.append((f'<tr class="{cls}">' if cls else "<tr>") + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _num(text: str) -> tuple[str, str]:
    return text, "num"


def _result(passed: bool) -> tuple[str, str]:
    return ("pass", "pass") if passed else ("FAIL", "fail")


# ---------------------------------------------------------------- report accessors
def _target_ids(targets: Sequence[str]) -> dict[str, str]:
    """Maps target names to unique id-safe slugs."""
    ids: dict[str, str] = {}
    for t in targets:
        slug, n = _slug(t), 2
        while slug in ids.values():
            slug, n = f"{_slug(t)}-{n}", n + 1
        ids[t] = slug
    return ids


# ---------------------------------------------------------------- plots
def _new_figure(width: float, height: float) -> Figure:
    """A matplotlib Figure (imported here: matplotlib loads only when a report is drawn)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig: Figure, fig_id: str) -> str:
    """Renders ``fig`` to inline SVG: no XML prolog, ids prefixed so they are unique per page."""
    import matplotlib as mpl

    buf = io.StringIO()
    with mpl.rc_context({"svg.hashsalt": fig_id}):
        fig.savefig(buf, format="svg", metadata=_SVG_METADATA)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    ids = set(re.findall(r'\bid="([^"]+)"', svg))

    def prefix(m: re.Match[str]) -> str:
        return m.group(1) + (f"{fig_id}-{m.group(2)}" if m.group(2) in ids else m.group(2))

    return re.sub(r'(\bid="|href="#|url\(#)([^")]+)', prefix, svg)


def _figure(fig_id: str, fig: Figure, caption: str) -> str:
    return (f'<figure id="{html.escape(fig_id)}">\n{_svg(fig, fig_id)}\n'
            f"<figcaption>{html.escape(caption)}</figcaption>\n</figure>")


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _label_points(ax: Any, points: Sequence[tuple[float, float, str]]) -> None:
    """Labels each point, pointing inward and stepping up or down to dodge earlier labels.

    Label boxes are estimated in points from the axes size and the text length (no drawing).
    """
    if not points:
        return
    ax.margins(x=0.08, y=0.12)
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    fig_w, fig_h = ax.get_figure().get_size_inches() * 72.0
    pos = ax.get_position()
    aw, ah = 0.85 * pos.width * fig_w, 0.85 * pos.height * fig_h
    placed: list[tuple[float, ...]] = []
    for x, y, label in sorted(points, key=lambda p: (p[0], p[1])):
        px = (x - x0) / ((x1 - x0) or 1.0) * aw
        py = (y - y0) / ((y1 - y0) or 1.0) * ah
        inward = 1 if px <= aw / 2.0 else -1
        width = 7.5 * 0.6 * len(label)
        left = px + 5 if inward > 0 else px - 5 - width
        for dy in (3, -11, 13, -21, 23, -31, 33, -41):
            box = (left, py + dy, left + width, py + dy + 9)
            if not any(_overlaps(box, b) for b in placed):
                break
        placed.append(box)
        text = ax.annotate(label, (x, y), xytext=(5 * inward, dy), textcoords="offset points",
                           fontsize=7.5, ha="left" if inward > 0 else "right",
                           parse_math=False)
        text.set_in_layout(False)


def _empty_note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", parse_math=False)


def _scatter(fig_id: str, pts: list[tuple[float, float, str]], missing: list[str],
             xlabel: str, title: str, caption: str, color: str) -> str:
    """A labelled accuracy scatter; ``missing`` names the points not measured."""
    fig = _new_figure(7, 4)
    ax = fig.subplots()
    for x, y, _ in pts:
        ax.plot([x], [y], "o", color=color)
    _label_points(ax, pts)
    if not pts:
        _empty_note(ax, NOT_MEASURED)
    ax.set_xlabel(xlabel, parse_math=False)
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(title, parse_math=False)
    if missing:
        caption += f" Not measured: {', '.join(missing)}."
    return _figure(fig_id, fig, caption)


def _plot_accuracy_size(report: Report) -> str:
    pts, missing = [], []
    for e in report.stages:
        if e.accuracy is None:
            missing.append(e.name)
        else:
            pts.append((e.bytes / 1024.0, 100.0 * e.accuracy, e.name))
    return _scatter("plot-accuracy-size", pts, missing, "size (KiB)",
                    "Accuracy vs size, every stage",
                    "Held-out accuracy against file size (raw bytes) of each stage's artefact.",
                    "#1f5fa8")


def _plot_accuracy_latency(report: Report, target: str, slug: str) -> str:
    pts, missing = [], []
    for e in report.tflite_entries:
        if target not in e.bench:
            continue
        p50 = e.bench[target].latency_ms.p50
        if p50 is None or e.accuracy is None:
            missing.append(e.artefact)
        else:
            pts.append((p50, 100.0 * e.accuracy, e.artefact))
    return _scatter(f"plot-accuracy-latency-{slug}", pts, missing,
                    f"p50 latency on {target} (ms)", f"Accuracy vs latency, target {target}",
                    f"Held-out accuracy against median (p50) latency of each .tflite on {target}.",
                    "#c25400")


def _plot_searches(report: Report) -> list[str]:
    """Figure against held-out (training share) accuracy over each channel search's steps."""
    plots = []
    for series in search_series(report.stages):
        fig = _new_figure(7, 4)
        ax = fig.subplots()
        xs = [p[0] for p in series["points"]]
        ax.plot(xs, [p[1] for p in series["points"]], "o-", color="#2a7f3f")
        if series["budget"] is not None:
            ax.axvline(series["budget"], color="#a00", linestyle="--", linewidth=1)
        _label_points(ax, series["points"])
        ax.set_xlabel(f"measured {series['unit']}", parse_math=False)
        ax.set_ylabel("accuracy on the held-out training share (%)")
        ax.set_title(f"Channel search {series['stage']}: {series['target']}", parse_math=False)
        plots.append(_figure(
            f"plot-search-{_slug(series['stage'])}", fig,
            f"Each accepted step of the search: its figure measured on the target and its "
            f"proposal's accuracy on the share of the training split held out; dashed: the "
            f"budget ({series['budget']:.6g} {series['unit']}; dense model "
            f"{series['dense']:.6g})."))
    return plots


def _plot_latency(report: Report, target: str, slug: str) -> str:
    fig = _new_figure(7, 4)
    ax = fig.subplots()
    stats, windows, missing = [], [], []
    for e in report.tflite_entries:
        if target not in e.bench:
            continue
        res = e.bench[target]
        lat = res.latency_ms
        if any(v is None for v in (lat.min, lat.p50, lat.p90, lat.p99, lat.max)):
            missing.append(e.artefact)
            continue
        emulated = " (emulated)" if res.emulated else ""
        label = f"{e.artefact}{emulated}".replace("$", r"\$")  # tick labels: no mathtext
        stats.append({"label": label, "whislo": lat.min,
                      "q1": lat.p50, "med": lat.p50, "q3": lat.p90,
                      "whishi": lat.p99, "fliers": [lat.max]})
        windows.append(list(res.window_medians_ms or ()))
    if stats:
        ax.bxp(stats, showfliers=True, widths=0.4,
               flierprops={"marker": "x", "markeredgecolor": "#b3261e"},
               medianprops={"color": "#c25400", "linewidth": 2})
        labelled = False
        for i, ws in enumerate(windows, start=1):
            if ws:
                ax.plot([i + 0.3] * len(ws), ws, "o", color="#1f5fa8", markersize=3.5,
                        label=None if labelled else "window medians")
                labelled = True
        lows = [s["whislo"] for s in stats if s["whislo"] > 0]
        if lows and max(s["fliers"][0] for s in stats) / min(lows) > 10:
            ax.set_yscale("log")
        if labelled:
            ax.legend(loc="upper right", fontsize=7.5)
    else:
        _empty_note(ax, NOT_MEASURED)
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"Latency per inference, target {target}", parse_math=False)
    caption = (f"Latency of each .tflite on {target}: box from p50 (line) to p90, whiskers from "
               "min to p99, x marks the max; dots are the medians of the timing windows "
               "(their spread is the repeatability).")
    if missing:
        caption += f" Not measured: {', '.join(missing)}."
    return _figure(f"plot-latency-{slug}", fig, caption)


def _plot_pareto(sweep: dict[str, Any]) -> str:
    cands = sweep.get("candidates") or []
    front_names = set(sweep.get("pareto_front") or [])
    target = (sweep.get("targets") or [None])[0]
    fig = _new_figure(11, 4.8)
    ax_lat, ax_size = fig.subplots(1, 2, sharey=True)
    panels = ((ax_lat, lambda c: (c.get("latency_ms") or {}).get(target),
               f"p50 latency on {target} (ms)"),
              (ax_size, lambda c: None if c.get("bytes") is None else c["bytes"] / 1024.0,
               "size (KiB)"))
    missing: set[str] = set()
    for ax, xof, xlabel in panels:
        pts, front = [], []
        for c in cands:
            x, acc = xof(c), c.get("accuracy")
            if x is None or acc is None:
                missing.add(str(c.get("name")))
                continue
            pt = (x, 100.0 * acc, str(c.get("name")))
            pts.append(pt)
            on_front = bool(c.get("pareto")) or c.get("name") in front_names
            if on_front:
                front.append(pt)
            ax.plot([x], [pt[1]], "o", markersize=6 if on_front else 5,
                    color="#c25400" if on_front else "#8a939d",
                    markerfacecolor=("#c25400" if on_front else "#8a939d")
                    if c.get("passed", True) else "none")
        if front:
            front.sort()
            ax.plot([p[0] for p in front], [p[1] for p in front], "-", color="#c25400",
                    linewidth=1.5, label="Pareto front")
            ax.legend(loc="lower right", fontsize=7.5)
        _label_points(ax, pts)
        if not pts:
            _empty_note(ax, NOT_MEASURED)
        ax.set_xlabel(xlabel, parse_math=False)
    ax_lat.set_ylabel("held-out accuracy (%)")
    fig.suptitle("Sweep: accuracy vs latency and size", parse_math=False)
    caption = (f"Every sweep candidate (latency: first target, {target}). Orange points, joined "
               "by a line, are the Pareto front: no other candidate is at least as good in "
               "accuracy, latency (within 3 %), raw size and gzip size together, so in one 2-D "
               "panel a front point can look dominated. Hollow markers failed a budget.")
    if missing:
        caption += f" Not measured for: {', '.join(sorted(missing))}."
    return _figure("plot-pareto", fig, caption)


# ---------------------------------------------------------------- sections
def _header(report: Report) -> str:
    final, data = report.final, report.data
    word = "PASS" if report.passed else "FAIL"
    badge = f'<span class="badge {word.lower()}">{word}</span>'
    drop = _fmt(final.accuracy_drop_points, "{:.2f} points")
    facts = [
        ("Final artefact", final.artefact),
        ("Held-out accuracy", f"{_pct(final.accuracy)} (float "
         f"{_pct(final.float_accuracy)}, drop {drop})"),
        ("Size", f"{_fmt(final.bytes)} bytes ({_kib(final.bytes)} KiB), gzip "
         f"{_fmt(final.gzip_bytes)} bytes ({_kib(final.gzip_bytes)} KiB)"),
        ("Full integer", _fmt(final.full_integer)),
        ("Data", f"{data.name}: {data.train_samples} training / "
         f"{data.heldout_samples} held-out samples"),
        ("Run", f"{report.created_utc}, {report.seconds} s, edgekit "
         f"{report.edgekit_version}"),
    ]
    dl = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts)
    return (f"<header><h1>edgekit report — {html.escape(final.artefact)} {badge}"
            f'</h1>\n<dl class="facts">{dl}</dl></header>')


def _scale(value: float | tuple[float, ...] | int | tuple[int, ...] | None, fmt: str) -> str:
    if value is None:
        return NA
    if isinstance(value, tuple):
        return f"per-channel ({len(value)})"
    return fmt.format(value)


def _stage_row(e: Entry, targets: list[str]) -> list[Cell]:
    row: list[Cell] = [e.name, e.artefact, _num(_pct(e.accuracy)), _num(_kib(e.bytes)),
                       _num(_kib(e.gzip_bytes)), _num(_pct(e.zero_share)),
                       *(_num(NA if n is None else f"{n:,}") for n in (e.macs, e.params))]
    bench = e.bench if isinstance(e, TfliteEntry) else {}
    for t in targets:
        if t in bench:
            lat = bench[t].latency_ms
            row += [_num(_ms(lat.p50)), _num(_ms(lat.p90))]
        else:
            row += [_num(NA), _num(NA)]
    return row


def _model_facts(report: Report, targets: list[str]) -> str:
    headers = ["stage", "artefact", "accuracy", "size KiB", "gzip KiB", "sparsity", "MACs",
               "params"]
    for t in targets:
        headers += [f"p50 ms [{t}]", f"p90 ms [{t}]"]
    rows = [_stage_row(e, targets) for e in report.stages]
    classes = ["final" if isinstance(e, TfliteEntry) and e.final else "" for e in report.stages]
    out = ["<h2>Model facts</h2>", "<h3>Stages</h3>", _table(headers, rows, classes),
           '<p class="note">The highlighted row is the final artefact; sparsity is the share of '
           "zero weights; MACs are multiply-accumulates per inference (zero weights count).</p>"]
    tfl = report.tflite_entries
    if not tfl:
        return "\n".join(out)
    ops: dict[str, dict[str, int]] = {}
    for e in tfl:
        for o in e.inspection.ops:
            ops.setdefault(o.op, {})[e.artefact] = o.count
    out += ["<h3>Ops of each .tflite</h3>",
            _table(["op"] + [e.artefact for e in tfl],
                   [[op] + [_num(str(counts.get(e.artefact, NA))) for e in tfl]
                    for op, counts in ops.items()])]
    io_rows = []
    for e in tfl:
        for kind, tensors in (("input", e.inspection.inputs), ("output", e.inspection.outputs)):
            for t in tensors:
                io_rows.append([e.artefact, kind, t.name, "×".join(str(d) for d in t.shape),
                                t.dtype, _num(_scale(t.scale, "{:.6g}")),
                                _num(_scale(t.zero_point, "{}"))])
    out += ["<h3>Inputs and outputs</h3>",
            _table(["artefact", "", "tensor", "shape", "dtype", "scale", "zero point"], io_rows),
            '<p class="note">Scale and zero point are the int8 quantization parameters '
            "(real = scale × (q − zero point)); — means not quantized.</p>"]
    for e in tfl:
        if not e.weight_sparsity:
            continue
        ws_rows = [[w.tensor.split(";")[0], w.op, "×".join(str(d) for d in w.shape), w.dtype,
                    _num(_fmt(w.params)), _num(_fmt(w.zeros)), _num(_pct(w.sparsity))]
                   for w in e.weight_sparsity]
        out += [f"<h3>Zero weights per layer: {html.escape(e.artefact)}</h3>",
                _table(["layer", "op", "shape", "dtype", "params", "zeros", "zero share"],
                       ws_rows)]
    return "\n".join(out)


def _notes_section(title: str, notes_list: Iterable[StageNotes]) -> str:
    """An ``<h2>`` section of :class:`~edgekit.report_stages.StageNotes` (empty when none)."""
    parts = []
    for notes in notes_list:
        parts += [f"<h3>{html.escape(notes.stage)} ({html.escape(notes.kind)})</h3>",
                  "<ul>" + "".join(f"<li>{html.escape(f.replace('`', ''))}</li>"
                                   for f in notes.facts) + "</ul>"]
        if notes.rows:
            parts += [f'<p class="note">{html.escape(notes.caption)}:</p>',
                      _table(notes.headers, notes.rows)]
        if notes.more:
            where = html.escape(notes.more_where.replace("`", ""))
            parts.append(f'<p class="note">{notes.more} more in {where}.</p>')
    return "\n".join([f"<h2>{html.escape(title)}</h2>", *parts]) if parts else ""


def _energy(res: BenchResult) -> str | None:
    en = res.energy
    if en is None or en.mj_per_inference is None:
        return None
    kind = "measured" if en.measured else "estimate"
    return f"{en.mj_per_inference:.4g} mJ ({kind}, {en.source})"


_DEVICE_ROWS: tuple[tuple[str, Callable[[BenchResult], Any]], ...] = (
    ("target kind", lambda r: r.target.kind), ("host", lambda r: r.target.host),
    ("machine", lambda r: r.target.machine), ("cpu", lambda r: r.target.cpu),
    ("cores", lambda r: r.target.cores), ("os", lambda r: r.target.os),
    ("governor", lambda r: r.target.governor),
    ("temperature °C", lambda r: r.target.temperature_c),
    ("throttled", lambda r: r.target.throttled),
    ("interpreter", lambda r: r.runtime.interpreter), ("version", lambda r: r.runtime.version),
    # threads None = the interpreter's default; delegate None = no delegate (both were known).
    ("threads", lambda r: str(r.runtime.threads or "default")),
    ("delegate", lambda r: str(r.runtime.delegate or "none")),
    ("runs / warm-up", lambda r: None if r.runs is None else f"{r.runs} / {r.warmup}"),
    ("emulated", lambda r: r.emulated),
    ("init ms", lambda r: _ms(r.latency_ms.init)),
    ("first inference ms", lambda r: _ms(r.latency_ms.first)),
    ("window CV", lambda r: _fmt(r.latency_ms.cv, "{:.4f}")),
    ("peak RSS MB", lambda r: _fmt(r.memory.peak_rss_mb, "{:.1f}")),
    ("energy / inference", _energy),
)


def _device_facts(report: Report, targets: list[str]) -> str:
    out = ["<h2>Device facts</h2>"]
    if not targets:
        return out[0] + f'\n<p class="note">No bench results: latency {NOT_MEASURED}.</p>'
    for t in targets:
        benched = [e for e in report.tflite_entries if t in e.bench]
        rows = [[label] + [_fmt(get(e.bench[t])) for e in benched] for label, get in _DEVICE_ROWS]
        out += [f"<h3>Target {html.escape(t)}</h3>",
                _table(["", *(e.artefact for e in benched)], rows)]
    return "\n".join(out)


def _budgets(report: Report) -> str:
    out = ["<h2>Budgets</h2>"]
    if not report.budgets:
        return out[0] + '\n<p class="note">No budgets set.</p>'
    rows = []
    for b in report.budgets:
        if b.name == "require_int8":
            limit = "full integer"
            value = "yes" if b.value else "no"
            extra = [f"float {what}: {', '.join(names)}"
                     for names, what in ((b.float_ops, "ops"), (b.float_io, "I/O")) if names]
            if extra:
                value += f" ({'; '.join(extra)})"
        else:
            limit = f"{b.limit} {b.unit}".strip()
            value = NOT_MEASURED if b.value is None else f"{b.value} {b.unit}".strip()
        rows.append([b.name, _num(limit), _num(value), _result(b.passed)])
    word = "PASS" if report.passed else "FAIL"
    out += [_table(["budget", "limit", "value", "result"], rows),
            f'<p>Overall: <span class="{word.lower()}">{word}</span></p>']
    return "\n".join(out)


def _budget_cell(cand: dict[str, Any]) -> Cell:
    if "passed" not in cand:
        return NOT_MEASURED
    failed = ", ".join(map(str, cand.get("failed_budgets") or []))
    return _result(True) if cand["passed"] else (f"FAIL: {failed}".rstrip(": "), "fail")


def _sweep_section(sweep: dict[str, Any]) -> str:
    targets = [str(t) for t in sweep.get("targets") or []]
    front_names = set(sweep.get("pareto_front") or [])
    headers = ["candidate", "params", "accuracy", "drop points", "size KiB", "gzip KiB",
               *(f"p50 ms [{t}]" for t in targets), "full integer", "budgets", "on front"]
    rows, classes = [], []
    for c in sweep.get("candidates") or []:
        on_front = bool(c.get("pareto")) or c.get("name") in front_names
        params = "; ".join(f"{k}={v}" for k, v in (c.get("params") or {}).items())
        lat = c.get("latency_ms") or {}
        rows.append([str(c.get("name")), params, _num(_pct(c.get("accuracy"))),
                     _num(_fmt(c.get("accuracy_drop_points"), "{:.2f}")),
                     _num(_kib(c.get("bytes"))), _num(_kib(c.get("gzip_bytes"))),
                     *(_num(_ms(lat.get(t))) for t in targets),
                     _fmt(c.get("full_integer")),
                     _budget_cell(c),
                     ("yes ★", "pass") if on_front else "no"])
        classes.append("front" if on_front else "")
    passed = sweep.get("passed")
    return "\n".join([
        "<h2>Sweep</h2>",
        f'<p>{len(rows)} candidates over {html.escape(", ".join(sweep.get("axes") or {}))}; '
        f"{sum(1 for c in classes if c)} on the Pareto front (highlighted rows)."
        + ("" if passed is None else f" Sweep budgets: {'PASS' if passed else 'FAIL'}.")
        + "</p>",
        _plot_pareto(sweep), _table(headers, rows, classes)])


# ---------------------------------------------------------------- public API
def _check(obj: Any, schema: str, what: str) -> None:
    if not isinstance(obj, dict) or obj.get("schema") != schema:
        got = obj.get("schema") if isinstance(obj, dict) else type(obj).__name__
        raise InputError(f"{what} must be an {schema!r} dict, got schema {got!r}")


def render_html(report: Report | dict[str, Any], sweep: dict[str, Any] | None = None) -> str:
    """Renders the report (and optionally a sweep) as one self-contained HTML page.

    The inputs are only read, never changed.

    Args:
        report: The report, or its ``edgekit.report/1`` dict.
        sweep: An ``edgekit.sweep/1`` dict; adds the Pareto plot and the candidates table.

    Returns:
        The HTML document (inline CSS and SVG; no scripts, no external references).

    Raises:
        InputError: ``report`` or ``sweep`` is not of the expected schema (or ``report`` has
            keys or values an ``edgekit.report/1`` report does not).
    """
    if not isinstance(report, Report):
        _check(report, REPORT_SCHEMA, "report")
        report = as_report(report)
    if sweep is not None:
        _check(sweep, SWEEP_SCHEMA, "sweep")
    targets = list(report.targets)
    ids = _target_ids(targets)
    import matplotlib as mpl

    with mpl.rc_context(_RC):
        plots = [_plot_accuracy_size(report), *_plot_searches(report)]
        for t in targets:
            plots += [_plot_accuracy_latency(report, t, ids[t]), _plot_latency(report, t, ids[t])]
        body = [_header(report), _model_facts(report, targets),
                _notes_section("Where the speed went", filter(None, [speed_notes(report)])),
                _notes_section("Compression stages",
                               filter(None, map(stage_notes, report.stages))),
                _notes_section("Quantization", (n for e in report.tflite_entries
                                                for n in conversion_notes(e))),
                _device_facts(report, targets),
                _budgets(report), "<h2>Plots</h2>", *plots]
        if sweep is not None:
            body.append(_sweep_section(sweep))
    title = html.escape(f"edgekit report — {report.final.artefact}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


def write_html(path: str | Path, report: Report | dict[str, Any],
               sweep: dict[str, Any] | None = None) -> Path:
    """Writes :func:`render_html` of the report to ``path`` atomically.

    Args:
        path: Destination file (usually ``OUT/report.html``).
        report: The report, or its ``edgekit.report/1`` dict.
        sweep: An optional ``edgekit.sweep/1`` dict.

    Returns:
        ``path`` as a Path.

    Raises:
        InputError: The inputs are not of the expected schema.
        BenchInputError: The destination folder cannot be written.
    """
    return write_text(path, render_html(report, sweep))
