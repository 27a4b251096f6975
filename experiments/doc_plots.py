"""Plots of the results pages, drawn from the markdown tables the pages already hold.

The run folders behind ``docs/results/*.md`` are not in the repository, so the committed plots are
drawn from the one record that is: the tables on the pages. Every plotted number is read from a
table by :func:`parse_tables` and :func:`parse_number`; a cell that is not a plain number (``–``,
``stopped after 2 epochs``, ``81.45 / 82.47 / 79.87 → 81.26 ± 1.31``) is left out, never guessed.

    python -m qlam_tn.experiments.doc_plots                    # docs/results/img/*.png
    python -m qlam_tn.experiments.doc_plots --out /tmp/img --only chi_sweep scaling_fits

Each plot names its page and table in a caption under the axes; each page shows its plots with
``![...](img/NAME.png)`` under the table they are drawn from.
"""
from __future__ import annotations

import argparse
import io
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PAGES = Path(__file__).resolve().parents[1] / "docs" / "results"
DPI = 100
MAX_BYTES = 80_000  # the committed PNGs stay small: a few, each well under this
QLAM_COLOUR, OTHER_COLOUR = "tab:purple", "tab:gray"


# --- reading the pages ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Number:
    """One numeric cell: ``95.10 ± 0.35`` -> value 95.1, std 0.35; ``1,140 (2,550)`` -> value
    1140, bracketed 2550; ``84.85 (statevector)`` -> value 84.85, note ``statevector``."""
    value: float
    std: float | None = None
    bracketed: float | None = None
    note: str | None = None
    text: str = field(default="", compare=False)  # value (± std) as the page writes it


_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?"
_NUMBER_CELL = re.compile(
    rf"^(?P<value>{_NUM})\s*%?"
    rf"(?:\s*±\s*(?P<std>{_NUM})\s*%?)?"
    r"(?:\s*\((?P<paren>[^()]*)\))?"
    r"\s*[†‡*]*$")
_BRACKETED = re.compile(rf"^(?P<value>{_NUM})\s*%?$")


def clean(cell: str) -> str:
    """A cell's text without markdown emphasis and code marks: ``**`su4`**`` -> ``su4``."""
    return re.sub(r"\s+", " ", cell.replace("**", "").replace("`", "")).strip()


def _float(text: str) -> float:
    return float(text.replace(",", ""))


def parse_number(cell: str) -> Number | None:
    """The number a cell holds, or None when the cell is anything but one number.

    Accepted: ``95.10``, ``**95.10 ± 0.35**``, ``1,140 (2,550)``, ``6.36 (8.4%)``, ``8e-12``,
    ``16,831†``, ``84.85 (statevector)`` (a bracketed remark that is not a number is kept as
    ``note``). Refused (None): ``–``, empty cells, ``81.45 / 82.47``, ``0.742 after 2 epochs``.
    """
    text = clean(cell).replace("−", "-")
    m = _NUMBER_CELL.match(text)
    if m is None:
        return None
    std = _float(m["std"]) if m["std"] else None
    bracketed, note = None, None
    if m["paren"] is not None:
        inner = _BRACKETED.match(m["paren"].strip())
        if inner:
            bracketed = _float(inner["value"])
        else:
            note = m["paren"].strip()
    written = m["value"] + (f" ± {m['std']}" if m["std"] else "")
    return Number(_float(m["value"]), std, bracketed, note, written)


def split_alternatives(cell: str) -> list[str]:
    """The parts of a ``a / b`` cell, bracketed remarks dropped first:
    ``1.11 ± 0.02 / 1.12 ± 0.04 (was 1.16 / 1.02)`` -> ``['1.11 ± 0.02', '1.12 ± 0.04']``."""
    return [part.strip() for part in re.sub(r"\([^()]*\)", "", cell).split(" / ")]


@dataclass(frozen=True)
class Table:
    """One markdown table: the heading above it, its header cells and rows (raw cell text), and
    the 1-based line numbers of its header and its last row."""
    heading: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    first_line: int
    last_line: int

    def column(self, name: str) -> int:
        """Index of the first column whose cleaned header starts with ``name``."""
        for i, cell in enumerate(self.header):
            if clean(cell).startswith(name):
                return i
        raise ValueError(f"table under {self.heading!r} (line {self.first_line}) has no column "
                         f"{name!r}; its columns: {[clean(c) for c in self.header]}")

    def texts(self, name: str) -> list[str]:
        return [clean(row[self.column(name)]) for row in self.rows]

    def numbers(self, name: str) -> list[Number | None]:
        return [parse_number(row[self.column(name)]) for row in self.rows]


def _cells(line: str) -> list[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [c.replace("\\|", "|").strip() for c in re.split(r"(?<!\\)\|", body)]


_SEPARATOR = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


def parse_tables(markdown: str) -> list[Table]:
    """Every table of a markdown page: a ``|``-row followed by a ``|---|--:|`` separator, then
    its ``|``-rows up to the first line that is not one. Rows are padded or cut to the header's
    width (a short row is the page's empty trailing cells)."""
    lines = markdown.splitlines()
    tables, heading, i = [], "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if (line.lstrip().startswith("|") and i + 1 < len(lines)
                and _SEPARATOR.match(lines[i + 1].strip())):
            header = _cells(line)
            j, rows = i + 2, []
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                cells = _cells(lines[j])
                rows.append(tuple((cells + [""] * len(header))[:len(header)]))
                j += 1
            tables.append(Table(heading, tuple(header), tuple(rows), i + 1, j))
            i = j
            continue
        i += 1
    return tables


def find_table(tables: list[Table], columns: list[str], heading: str | None = None) -> Table:
    """The first table whose header has every column of ``columns`` (cleaned header cells
    starting with each name), under a heading starting with ``heading`` when given."""
    for t in tables:
        if heading is not None and not t.heading.startswith(heading):
            continue
        try:
            [t.column(c) for c in columns]
        except ValueError:
            continue
        return t
    where = f" under a heading starting {heading!r}" if heading else ""
    raise ValueError(f"no table with columns {columns}{where}")


# --- drawing -------------------------------------------------------------------------------------

def _figure(width: float, height: float, rows: int = 1, cols: int = 1, **kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    # Room under the axes for the caption line, which constrained layout does not place.
    fig.get_layout_engine().set(rect=(0, 0.4 / height, 1, 1 - 0.4 / height))
    axes = fig.subplots(rows, cols, squeeze=False, **kw)
    return fig, axes


def _save(fig, path: Path, caption: str) -> None:
    from PIL import Image  # matplotlib's own dependency

    fig.text(0.5, 0.08 / fig.get_figheight(), caption, ha="center", va="bottom", fontsize=7,
             color="0.35", wrap=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    # A palette of 128 colours keeps lines and anti-aliased text clean at a third of the bytes.
    image = Image.open(buf).convert("RGB").quantize(colors=128)
    image.save(path, format="PNG", optimize=True)


def _source(page: str, table: Table) -> str:
    return f"Source: docs/results/{page}.md, the table under “{table.heading}”."


def _accuracy_dots(ax, labels, numbers, qlam, xlabel):
    """Horizontal dot plot, the page's row order top to bottom, ± std as error bars."""
    ys = list(range(len(labels)))[::-1]
    for y, n, q in zip(ys, numbers, qlam):
        colour = QLAM_COLOUR if q else OTHER_COLOUR
        ax.errorbar(n.value, y, xerr=n.std or 0.0, fmt="o", color=colour, capsize=3, ms=5)
        ax.annotate(n.text, (n.value + (n.std or 0.0), y), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=7)
    ax.set_yticks(ys, labels, fontsize=7)
    lo = min(n.value - (n.std or 0.0) for n in numbers)
    hi = max(n.value + (n.std or 0.0) for n in numbers)
    pad = 0.08 * (hi - lo) or 1.0
    ax.set_xlim(lo - pad, hi + 3.5 * pad)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def _model_comparison(page, columns, score, xlabel, title, label):
    """A dot plot of one score column of a model-comparison table, rows without a number left out."""
    def draw(tables, path):
        t = find_table(tables, columns)
        keep = [(row, n) for row, n in zip(t.rows, t.numbers(score)) if n is not None]
        header = [clean(c) for c in t.header]
        labels = [label(dict(zip(header, map(clean, row)))) for row, _ in keep]
        qlam = [clean(row[0]).startswith("QLAM") for row, _ in keep]
        fig, axes = _figure(7.5, 0.42 * len(keep) + 1.3)
        _accuracy_dots(axes[0, 0], labels, [n for _, n in keep], qlam, xlabel)
        axes[0, 0].set_title(title, fontsize=10)
        _save(fig, path, _source(page, t) + f" Column “{clean(t.header[t.column(score)])}”; "
                                            "error bars: ± std over seeds; QLAM in purple.")
        return t
    return draw


def _wrapped_model(row):
    return textwrap.fill(f"{row['model']} ({row['params']} params)", 46)


def _pixel_label(row):
    name = f"QLAM {row['options']}" if row["model"].startswith("QLAM") else row["model"]
    return f"{name} ({row['seeds']} seeds)"


def _chi_sweep(tables, path):
    t = find_table(tables, ["χ", "trained and evaluated at χ", "trained exact"])
    ticks = [textwrap.fill(c, 10) for c in t.texts("χ")]
    xs = list(range(len(ticks)))
    fig, axes = _figure(8.0, 3.6, 1, 2)
    acc, disc = axes[0]
    series = [(1, 2, "trained and evaluated at χ", "o-", QLAM_COLOUR),
              (3, 4, "trained exact, evaluated at χ", "s--", "tab:orange")]
    for acc_col, disc_col, name, style, colour in series:
        a = [parse_number(row[acc_col]) for row in t.rows]
        acc.plot([x for x, n in zip(xs, a) if n], [n.value for n in a if n], style, color=colour,
                 label=name)
        d = [parse_number(row[disc_col]) for row in t.rows]
        # A log axis has no 0: a zero discarded weight (the statevector) is left out.
        pts = [(x, n.value) for x, n in zip(xs, d) if n and n.value > 0]
        disc.plot(*zip(*pts), style, color=colour, label=name)
    acc.set_ylabel("test accuracy (%)")
    acc.set_title("accuracy versus bond cap χ", fontsize=10)
    acc.legend(fontsize=7)
    disc.set_yscale("log")
    disc.set_ylabel("discarded weight per sequence")
    disc.set_title("discarded weight (zeros not drawn)", fontsize=10)
    for ax in (acc, disc):
        ax.set_xticks(xs, ticks, fontsize=8)
        ax.set_xlabel("bond cap χ")
        ax.grid(alpha=0.3)
    _save(fig, path, _source("chi_sweep", t) + " QLAM n=8, one seed.")
    return t


def _token_counts(t: Table, first: int, last: int) -> list[int]:
    """The token counts of header cells such as ``after 16``, ``64``, ``1,024 tokens``."""
    counts = []
    for cell in t.header[first:last + 1]:
        n = parse_number(re.sub(r"after|tokens", "", clean(cell)))
        if n is None:
            raise ValueError(f"column {cell!r} of the table under {t.heading!r} is not a token count")
        counts.append(int(n.value))
    return counts


def _entropy_lines(ax, t, first, last, label_of, style_of):
    counts = _token_counts(t, first, last)
    for row in t.rows:
        vals = [parse_number(c) for c in row[first:last + 1]]
        pts = [(x, n.value) for x, n in zip(counts, vals) if n is not None]
        style, colour = style_of(row)
        ax.plot(*zip(*pts), style, color=colour, label=label_of(row), ms=4)
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [f"{c:,}" for c in counts], fontsize=8)
    ax.set_xlabel("tokens fed")
    ax.set_ylabel("centre-bond entropy (bits)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


_CHI_COLOURS = ["tab:red", "tab:orange", "tab:green", "tab:blue", "tab:purple"]


def _chi_colour(t: Table, chi_col: int):
    chis = list(dict.fromkeys(clean(row[chi_col]) for row in t.rows))
    return lambda row: _CHI_COLOURS[chis.index(clean(row[chi_col])) % len(_CHI_COLOURS)]


def _entanglement_random(tables, path):
    t = find_table(tables, ["n", "χ", "after 16"])
    first, last = t.column("after"), t.column("plateau") - 1
    colour = _chi_colour(t, 1)
    fig, axes = _figure(6.5, 4.0)
    _entropy_lines(axes[0, 0], t, first, last,
                   lambda r: f"n={clean(r[0])}, χ={clean(r[1])}",
                   lambda r: ("o-" if clean(r[0]) == clean(t.rows[0][0]) else "s--", colour(r)))
    axes[0, 0].set_title("a random QLAM memory fed MNIST pixels", fontsize=10)
    _save(fig, path, _source("entanglement", t) + " Plateau and discarded-weight columns not drawn.")
    return t


def _entanglement_trained(tables, path):
    t = find_table(tables, ["memory", "χ", "after 4"])
    first, last = t.column("after"), t.column("plateau") - 1
    colour = _chi_colour(t, 1)
    fig, axes = _figure(6.5, 4.0)
    _entropy_lines(axes[0, 0], t, first, last,
                   lambda r: f"{clean(r[0])}, χ={clean(r[1])}",
                   lambda r: ("o-" if clean(r[0]) == "trained" else "s--", colour(r)))
    axes[0, 0].set_title("trained (solid) and random (dashed) memories, n=8", fontsize=10)
    _save(fig, path, _source("entanglement", t) + " Plateau and discarded-weight columns not drawn.")
    return t


def _pixel_probes_scale(tables, path):
    t = find_table(tables, ["encoding scale", "0.003"])
    scales = [parse_number(c) for c in t.header[1:]]
    fig, axes = _figure(6.5, 3.8)
    ax = axes[0, 0]
    for row, colour in zip(t.rows, ["tab:purple", "tab:orange"]):
        vals = [parse_number(c) for c in row[1:]]
        pts = [(s.value, v.value) for s, v in zip(scales, vals) if s and v]
        ax.plot(*zip(*pts), "o-", color=colour, label=f"{clean(row[0])}, memory")
        # A column without a scale is a reference (the page's "pixels, no memory").
        for head, s, v in zip(t.header[1:], scales, vals):
            if s is None and v is not None:
                ax.axhline(v.value, ls=":", color=colour, label=f"{clean(row[0])}, {clean(head)}")
    for s in scales:
        if s is not None and s.note:
            ax.axvline(s.value, color="0.6", lw=0.8)
            ax.annotate(s.note, (s.value, ax.get_ylim()[0]), xytext=(3, 3),
                        textcoords="offset points", fontsize=7, color="0.4")
    ax.set_xscale("log")
    ax.set_xlabel("encoding scale (init std of the encoding weights)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("untrained per-row memory: accuracy of a linear readout", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    _save(fig, path, _source("pixel_probes", t))
    return t


def _qlam_ablation(tables, path):
    first = find_table(tables, ["change", "lr", "best val acc"], heading="Small runs")
    second = find_table([t for t in tables if t is not first], ["change", "best val acc"],
                        heading="Small runs")
    fig, axes = _figure(7.0, 6.0, 2, 1, height_ratios=[len(first.rows), len(second.rows)])
    for ax, t, title in ((axes[0, 0], first, "first round, from the base cell"),
                         (axes[1, 0], second, "second round, from encoding init 0.1 (lr 0.01 unless stated)")):
        labels = t.texts("change")
        if "lr" in [clean(c) for c in t.header]:
            labels = [f"{c} (lr {lr})" for c, lr in zip(labels, t.texts("lr"))]
        vals = t.numbers("best val acc")
        keep = [(l, v) for l, v in zip(labels, vals) if v is not None]
        ys = list(range(len(keep)))[::-1]
        ax.barh(ys, [v.value for _, v in keep], color=QLAM_COLOUR, height=0.6)
        for y, (_, v) in zip(ys, keep):
            ax.annotate(v.text, (v.value, y), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=7)
        ax.set_yticks(ys, [l for l, _ in keep], fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[1, 0].set_xlabel("best validation accuracy (fraction), one seed")
    _save(fig, path, f"Source: docs/results/qlam_ablation.md, the two tables under “{first.heading}”.")
    return second


def _per_token_series(t: Table):
    """Rows of the per-token table grouped by (backend, χ, B, dtype): each group with two or more
    n is one series of time against n."""
    groups: dict[tuple, list] = {}
    for row in t.rows:
        n, fwd = parse_number(row[t.column("n")]), parse_number(row[t.column("fwd")])
        if n is None or fwd is None:
            continue
        key = tuple(clean(row[t.column(c)]) for c in ("backend", "χ", "B", "dtype"))
        groups.setdefault(key, []).append((n.value, fwd, parse_number(row[t.column("fwd+bwd")])))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in groups.items() if len(v) >= 2}


def _n_slopes(fits: Table, chi: str, batch: str, dtype: str) -> str | None:
    """The fitted forward slope of time against n for one series, from the fits table's
    ``B=1 float64 fwd / complex128 fwd`` cells (a part without ``B=`` keeps the one before it)."""
    for row in fits.rows:
        what = clean(row[fits.column("time vs")])
        if not (what.startswith("n ") and f"χ={chi}" in what):
            continue
        parts = split_alternatives(clean(row[fits.column("series")]))
        slopes = split_alternatives(clean(row[fits.column("slope")]))
        b = None
        for part, slope in zip(parts, slopes):
            b = re.search(r"B=(\d+)", part)[1] if "B=" in part else b
            n = parse_number(slope)
            if b == batch and f"{dtype} fwd" in part and n is not None:
                return f"{n.value:g} ± {n.std:g}" + f", n {clean(row[fits.column('range')])[2:]}"
    return None


def _scaling_n(tables, path):
    t = find_table(tables, ["backend", "n", "χ", "B", "dtype", "fwd", "fwd+bwd"])
    fits = find_table(tables, ["time vs", "series", "slope"])
    series = _per_token_series(t)
    if not series:
        raise ValueError(f"the per-token table (line {t.first_line}) has no series of two n or more")
    fig, axes = _figure(6.5, 4.0)
    ax = axes[0, 0]
    for (backend, chi, batch, dtype), pts in series.items():
        ns = [p[0] for p in pts]
        slope = _n_slopes(fits, chi, batch, dtype)
        fit = f"; fitted slope {slope}" if slope else ""
        ax.plot(ns, [p[1].value for p in pts], "o-", color=QLAM_COLOUR,
                label=f"{backend} χ={chi} B={batch} {dtype}, fwd{fit}")
        bwd = [(n, p[2].value) for n, p in zip(ns, pts) if p[2] is not None]
        ax.plot(*zip(*bwd), "s-", color="tab:orange", label="the same, fwd+bwd")
        old = [(n, p[1].bracketed) for n, p in zip(ns, pts) if p[1].bracketed is not None]
        if old:
            ax.plot(*zip(*old), "o:", color=QLAM_COLOUR, mfc="none",
                    label="fwd, the run before the compiled calls (bracketed)")
        old = [(n, p[2].bracketed) for n, p in zip(ns, pts) if p[2] and p[2].bracketed is not None]
        if old:
            ax.plot(*zip(*old), "s:", color="tab:orange", mfc="none",
                    label="fwd+bwd, the run before (bracketed)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ns = sorted({p[0] for pts in series.values() for p in pts})
    ax.set_xticks(ns, [f"{n:g}" for n in ns])
    ax.set_xlabel("qubits n")
    ax.set_ylabel("ms per token")
    ax.set_title("time per token against n (the page's selected rows)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3, which="both")
    _save(fig, path, _source("scaling", t) + " A series: rows that differ only in n. Slope: the "
                                             "page's fit over the full run (“Fits”).")
    return t


def _scaling_fits(tables, path):
    t = find_table(tables, ["time vs", "series", "slope", "expected"])
    labels, slopes, expected, notes = [], [], [], []
    for row in t.rows:
        what = clean(row[t.column("time vs")])
        note = clean(row[t.column("expected")])
        exp = [parse_number(x) for x in re.findall(_NUM, note)]
        b = ""
        for part, slope in zip(split_alternatives(clean(row[t.column("series")])),
                               split_alternatives(clean(row[t.column("slope")]))):
            b = (re.search(r"B=\d+", part)[0] + " ") if "B=" in part else b
            n = parse_number(slope)
            if n is None:
                continue
            labels.append(f"{what}: {b if 'B=' not in part else ''}{part}")
            slopes.append(n)
            expected.append([e.value for e in exp if e is not None])
            notes.append(note)
    ys = list(range(len(labels)))[::-1]
    fig, axes = _figure(8.0, 0.3 * len(labels) + 1.6)
    ax = axes[0, 0]
    for y, n, exp, note in zip(ys, slopes, expected, notes):
        ax.errorbar(n.value, y, xerr=n.std or 0.0, fmt="o", color=QLAM_COLOUR, capsize=3, ms=4)
        if len(exp) == 2:  # "1 → 2": a range
            ax.plot(exp, [y, y], "-", color="tab:green", lw=4, alpha=0.35)
        for e in exp[:1] if len(exp) != 2 else []:
            ax.plot(e, y, "|", color="tab:green", ms=12, mew=2)
        if exp and parse_number(note) is None:  # "3 at large χ", "1 → 2": say it as the page does
            ax.annotate(note, (max(exp), y), xytext=(0, 7), textcoords="offset points",
                        ha="right" if max(exp) > 2.5 else "center", fontsize=6, color="tab:green")
    ax.plot([], [], "o", color=QLAM_COLOUR, label="fitted slope ± s.e.")
    ax.plot([], [], "|", color="tab:green", ms=12, mew=2, label="expected (page's column)")
    ax.set_yticks(ys, [textwrap.shorten(l, 70) for l in labels], fontsize=7)
    ax.set_xlabel("log-log slope of time")
    ax.set_title("scaling exponents: fitted against expected", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path, _source("scaling", t) + " One point per part of an “a / b” cell; the “was” "
                                             "values (the earlier run) are not drawn.")
    return t


def _hardware_accuracy(tables, path):
    """Accuracy against shots (``restart`` over trained seeds; ``end`` of the readout_at=last
    model; the shot-noise-trained model; ``collapse``) and against the gate-noise rate, from the
    shots table and the evaluations table of hardware.md. The image goes under the shots table."""
    shots = find_table(tables, ["shots S per read and setting", "mean ± std over trained seeds"])
    runs = find_table(tables, ["evaluation", "N", "accuracy (%)", "exact on the same N (%)"])
    names, accs = runs.texts("evaluation"), runs.numbers("accuracy (%)")

    def series(prefix):
        # The evaluation's name ends in its S (or p): "rowlast-s0-end-16", "row-s0-noise-0.01".
        pts = [(float(n[len(prefix):]), a.value) for n, a in zip(names, accs)
               if n.startswith(prefix) and a is not None]
        return [x for x, _ in pts], [y for _, y in pts]

    fig, axes = _figure(9.0, 4.2, 1, 2)
    a, b = axes[0, 0], axes[0, 1]
    xs, ys, es, exact = [], [], [], None
    for label, n in zip(shots.texts("shots S per read and setting"),
                        shots.numbers("mean ± std over trained seeds")):
        if n is None:
            continue
        if label == "inf":
            exact = n.value
        else:
            xs.append(float(label))
            ys.append(n.value)
            es.append(n.std or 0.0)
    a.errorbar(xs, ys, yerr=es, marker="o", capsize=3, color=QLAM_COLOUR,
               label="restart: S shots per read and setting (3 seeds)")
    if exact is not None:
        a.axhline(exact, color="k", ls="--", lw=1, label=f"exact expectations ({exact:.1f}%)")
    for prefix, style, colour, label in (
            ("rowlast-s0-end-", "s-", "tab:green", "end: readout_at=last model, one read"),
            ("row-shots4trained-s0-restart-", "^-", "tab:orange", "restart, model trained with S=4 shot noise"),
            ("row-s0-collapse-", "x", "tab:blue", "collapse: S copies (S/10 per setting)")):
        x, y = series(prefix)
        if x:
            a.plot(x, y, style, color=colour, ms=6, label=label)
    a.set_xscale("log")
    a.set_xlabel("shots (copies for collapse) S")
    a.set_ylabel("test accuracy (%)")
    a.set_title("row-level mnist10k QLAM (T=28, K=10 settings)", fontsize=10)
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    x, y = series("row-s0-noise-")
    b.plot(x, y, "o-", color=QLAM_COLOUR, label="depolarising p after every gate (16 trajectories)")
    ref = [e.value for n, e in zip(names, runs.numbers("exact on the same N (%)"))
           if n.startswith("row-s0-noise-") and e is not None]
    if ref:
        b.axhline(ref[0], color="k", ls="--", lw=1, label="noiseless, same 200 images")
    b.set_xscale("log")
    b.set_xlabel("error rate p per gate")
    b.set_ylabel("test accuracy (%)")
    b.set_title("gate noise (trained seed 0, 200 test images)", fontsize=10)
    b.legend(fontsize=7)
    b.grid(alpha=0.3)
    _save(fig, path, f"Source: docs/results/hardware.md, the tables under “{clean(shots.heading)}” and "
                     f"“{clean(runs.heading)}”; error bars: ± std over trained seeds.")
    return shots


def _memory_series(ax, t: Table, label_col: str, prefix: str, skip: str | None = None) -> list[float]:
    """One line per row of ``t`` over its ``prefix``-numbered columns (``K=2``, ``L=64``): the
    value ± std of each cell; QLAM's rows in its colour. Returns the x values."""
    cols = [i for i, c in enumerate(t.header) if clean(c).startswith(prefix)]
    xs = [parse_number(clean(t.header[i])[len(prefix):]).value for i in cols]
    for row, label in zip(t.rows, t.texts(label_col)):
        if skip and label == skip:
            continue
        pts = [(x, parse_number(row[i])) for x, i in zip(xs, cols)]
        pts = [(x, n) for x, n in pts if n is not None]
        if not pts:
            continue
        one_seed = any(n.bracketed == 1 for _, n in pts)
        ax.errorbar([x for x, _ in pts], [n.value for _, n in pts], yerr=[n.std or 0.0 for _, n in pts],
                    fmt="o-" if not one_seed else "o:", capsize=3, ms=4,
                    color=QLAM_COLOUR if label.startswith("qlam") else None,
                    label=label + (" (1 seed)" if one_seed else ""))
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.minorticks_off()  # only the page's own lengths and pair counts are labelled
    ax.grid(alpha=0.3)
    return xs


def _memory_capacity(tables, path):
    t = find_table(tables, ["model", "params", "state (floats)", "K="])
    fig, axes = _figure(9.0, 3.8, 1, 2)
    by_k, by_state = axes[0]
    _memory_series(by_k, t, "model", "K=")
    by_k.set_xlabel("key-value pairs K")
    by_k.set_ylabel("test accuracy (%)")
    by_k.set_title("MQAR accuracy against pairs", fontsize=10)
    by_k.legend(fontsize=7)
    states = t.numbers("state (floats)")
    for i, cell in enumerate(t.header):
        if not clean(cell).startswith("K="):
            continue
        pts = [(s.value, parse_number(row[i]), m) for s, row, m in zip(states, t.rows, t.texts("model"))]
        pts = [(x, n, m) for x, n, m in pts if n is not None]
        by_state.plot([x for x, _, _ in pts], [n.value for _, n, _ in pts], "o", label=clean(cell))
        for x, n, m in pts:
            by_state.annotate(m, (x, n.value), xytext=(3, 2), textcoords="offset points", fontsize=6)
    by_state.set_xscale("log")
    by_state.set_xlabel("state size (floats carried token to token)")
    by_state.set_ylabel("test accuracy (%)")
    by_state.set_title("accuracy against state size (Zoology's Fig. 2 form)", fontsize=10)
    by_state.legend(fontsize=7)
    by_state.grid(alpha=0.3)
    _save(fig, path, _source("memory", t) + " Mean ± std over seeds.")
    return t


def _memory_recall(tables, path):
    sel = find_table(tables, ["model", "L="], heading="Selective copying")
    ind = find_table(tables, ["model", "L="], heading="Induction heads")
    fig, axes = _figure(9.0, 3.8, 1, 2)
    for ax, t, title in ((axes[0, 0], sel, "selective copying: trained and tested at L"),
                         (axes[0, 1], ind, "induction heads: trained at L=64, tested at L")):
        _memory_series(ax, t, "model", "L=")
        ax.set_xlabel("sequence length L")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 102)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    _save(fig, path, _source("memory", ind).rstrip(".") + " and the one under “" + sel.heading + "”.")
    return ind


def _memory_entanglement(tables, path):
    t = find_table(tables, ["K", "memory", "t="])
    cols = [i for i, c in enumerate(t.header) if clean(c).startswith("t=")]
    ts = [parse_number(clean(t.header[i])[2:]).value for i in cols]
    ks = sorted({int(parse_number(k).value) for k in t.texts("K")})
    fig, axes = _figure(3.3 * len(ks), 3.4, 1, len(ks))
    for ax, k in zip(axes[0], ks):
        for row, kk, tag in zip(t.rows, t.texts("K"), t.texts("memory")):
            if int(parse_number(kk).value) != k:
                continue
            ax.plot(ts, [parse_number(row[i]).value for i in cols], "o-" if tag == "trained" else "s--",
                    color=QLAM_COLOUR if tag == "trained" else OTHER_COLOUR, ms=3, label=tag)
        ax.axvline(2 * k + 0.5, color="0.5", ls=":", lw=1, label="pairs | queries")
        ax.set_xlabel("token t")
        ax.set_ylabel("centre-bond entropy (bits)")
        ax.set_title(f"MQAR K={k}", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    _save(fig, path, _source("memory", t) + " Mean over 3 trained runs and their fresh initialisations.")
    return t


def _n_columns(t: Table) -> tuple[list[int], list[float]]:
    """The ``n=``-headed columns of a qubit-study table and their qubit counts."""
    cols = [i for i, c in enumerate(t.header) if clean(c).startswith("n=")]
    return cols, [parse_number(clean(t.header[i])[2:]).value for i in cols]


def _log2_panel(ax, ticks, xlabel: str, title: str, ncol: int = 1) -> None:
    """A qubit-study panel: a log2 x axis labelled at ``ticks`` only, its grid, title and legend."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=ncol)


def _qubit_accuracy(tables) -> Table:
    return find_table(tables, ["dataset", "memory", "χ", "n="], heading="Accuracy against qubits")


def _qubits_n(tables, path):
    t = _qubit_accuracy(tables)
    cols, ns = _n_columns(t)
    datasets = list(dict.fromkeys(t.texts("dataset")))
    fig, axes = _figure(4.6 * len(datasets), 3.8, 1, len(datasets), sharey=True)
    for ax, d in zip(axes[0], datasets):
        for row, dd, mem, chi in zip(t.rows, t.texts("dataset"), t.texts("memory"), t.texts("χ")):
            if dd != d:
                continue
            pts = [(n, parse_number(row[i])) for n, i in zip(ns, cols)]
            pts = [(n, v) for n, v in pts if v is not None]
            ax.errorbar([n for n, _ in pts], [v.value for _, v in pts], yerr=[v.std or 0.0 for _, v in pts],
                        fmt="o-" if mem == "frozen" else "s--", capsize=3, ms=4,
                        color=QLAM_COLOUR if mem == "trained" else None, label=f"{mem}, χ={chi}")
        _log2_panel(ax, ns, "qubits n", d)
    axes[0, 0].set_ylabel("accuracy (%)")
    _save(fig, path, _source("qubits", t) + " Mean ± std over seeds.")
    return t


def _qubits_chi(tables, path):
    t = _qubit_accuracy(tables)
    cols, ns = _n_columns(t)
    datasets = list(dict.fromkeys(t.texts("dataset")))
    fig, axes = _figure(4.6 * len(datasets), 3.8, 1, len(datasets), sharey=True)
    for ax, d in zip(axes[0], datasets):
        rows = [(parse_number(chi).value, row) for row, dd, mem, chi in
                zip(t.rows, t.texts("dataset"), t.texts("memory"), t.texts("χ"))
                if dd == d and mem == "frozen" and parse_number(chi) is not None]  # "exact" has no χ to place
        chis = sorted({c for c, _ in rows})
        for n, i in zip(ns, cols):
            pts = sorted((c, parse_number(row[i])) for c, row in rows if parse_number(row[i]) is not None)
            if len(pts) < 2:
                continue
            ax.errorbar([c for c, _ in pts], [v.value for _, v in pts], yerr=[v.std or 0.0 for _, v in pts],
                        fmt="o-", capsize=3, ms=4, label=f"n={n:g}")
        _log2_panel(ax, chis, "bond cap χ", f"frozen memories, {d}", ncol=2)
    axes[0, 0].set_ylabel("accuracy (%)")
    _save(fig, path, _source("qubits", t) + " Mean ± std over seeds; n with two or more χ measured.")
    return t


def _qubits_state(tables, path):
    acc = _qubit_accuracy(tables)
    size = find_table(tables, ["χ", "n="], heading="State size")
    try:
        gru = find_table(tables, ["dataset", "h="], heading="The classical line")
    except ValueError:  # a page without the classical line: QLAM alone
        gru = None
    cols, ns = _n_columns(acc)
    size_cols, size_ns = _n_columns(size)
    floats = {}
    for row in size.rows:
        if parse_number(row[0]) is None:  # "exact": no cap
            continue
        chi = parse_number(row[0]).value
        for n, i in zip(size_ns, size_cols):
            v = parse_number(row[i])
            if v is not None:
                floats[(chi, n)] = v.value
    datasets = list(dict.fromkeys(acc.texts("dataset")))
    fig, axes = _figure(4.6 * len(datasets), 3.8, 1, len(datasets), sharey=True)
    hcols = [i for i, c in enumerate(gru.header) if clean(c).startswith("h=")] if gru else []
    hs = [parse_number(clean(gru.header[i])[2:]).value for i in hcols]
    for ax, d in zip(axes[0], datasets):
        for row, dd, mem, chi in zip(acc.rows, acc.texts("dataset"), acc.texts("memory"), acc.texts("χ")):
            if dd != d or parse_number(chi) is None:
                continue
            c = parse_number(chi).value
            pts = [(floats[(c, n)], parse_number(row[i])) for n, i in zip(ns, cols)
                   if parse_number(row[i]) is not None and (c, n) in floats]
            ax.errorbar([x for x, _ in pts], [v.value for _, v in pts], yerr=[v.std or 0.0 for _, v in pts],
                        fmt="o" if mem == "frozen" else "s", capsize=2, ms=4,
                        color=QLAM_COLOUR if mem == "trained" else None, label=f"QLAM {mem}, χ={chi}")
        for row, dd in zip(gru.rows if gru else [], gru.texts("dataset") if gru else []):
            if dd != d:
                continue
            pts = [(h, parse_number(row[i])) for h, i in zip(hs, hcols) if parse_number(row[i]) is not None]
            ax.errorbar([h for h, _ in pts], [v.value for _, v in pts], yerr=[v.std or 0.0 for _, v in pts],
                        fmt="-", color="black", lw=1.5, capsize=2, label="GRU (state = hidden size)")
        ax.set_xscale("log")
        ax.set_xlabel("state size (floats carried token to token)")
        ax.set_title(d, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("accuracy (%)")
    base = gru or acc
    _save(fig, path, _source("qubits", base).rstrip(".") + ", “" + size.heading + "” and “"
          + (acc if gru else size).heading + "”.")
    return base


def _qubits_trained(tables, path):
    t = find_table(tables, ["dataset", "n", "χ", "discarded weight", "centre entropy, trained"],
                   heading="Trained memories")
    fig, axes = _figure(9.0, 3.6, 1, 2)
    disc_ax, ent_ax = axes[0]
    groups = {}
    for row, d, chi in zip(t.rows, t.texts("dataset"), t.texts("χ")):
        groups.setdefault((d, chi), []).append(row)
    smallest = []
    for k, ((d, chi), rows) in enumerate(groups.items()):
        colour = f"C{k}"
        n = [parse_number(r[t.column("n")]).value for r in rows]
        label = f"{d}, χ={chi}"
        disc = [parse_number(r[t.column("discarded weight")]) for r in rows]
        smallest += [v.value for v in disc if v.value > 0]
        disc_ax.errorbar(n, [v.value for v in disc], yerr=[v.std or 0.0 for v in disc], fmt="o-",
                         capsize=3, ms=4, color=colour, label=label)
        for col, fmt, tag in (("centre entropy, trained", "o-", "trained"),
                              ("centre entropy, frozen", "s--", "frozen (its init)")):
            vals = [parse_number(r[t.column(col)]) for r in rows]
            pts = [(x, v) for x, v in zip(n, vals) if v is not None]
            ent_ax.errorbar([x for x, _ in pts], [v.value for _, v in pts], yerr=[v.std or 0.0 for _, v in pts],
                            fmt=fmt, capsize=3, ms=4, color=colour, label=f"{tag}, {label}")
        ent_ax.plot(n, [parse_number(r[t.column("max")]).value for r in rows], ":", color=colour, lw=1,
                    label="max: min(⌊n/2⌋, log2 χ)" if k == 0 else None)
    # symlog keeps the memories that discard nothing (0) on the axis
    disc_ax.set_yscale("symlog", linthresh=min(smallest, default=1e-12))
    disc_ax.set(xlabel="qubits n", ylabel="discarded weight per image")
    disc_ax.set_title("trained memories: weight cut by the bond cap", fontsize=10)
    ent_ax.set(xlabel="qubits n", ylabel="centre-bond entropy (bits)")
    ent_ax.set_title("entanglement of the final memory", fontsize=10)
    for ax in (disc_ax, ent_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, path, _source("qubits", t) + " Means over held-out images, ± std over seeds.")
    return t


@dataclass(frozen=True)
class Plot:
    """One PNG: its name, the page it is drawn from, and the function that draws it
    (``draw(tables, path) -> Table``, the table the image line goes under)."""
    name: str
    page: str
    draw: Callable


PLOTS = [
    Plot("row_mnist10k", "row_mnist10k", _model_comparison(
        "row_mnist10k", ["model", "options", "params", "test acc (%)"], "test acc (%)",
        "test accuracy (%), mean ± std over 3 seeds", "row-level mnist10k (T=28)", _wrapped_model)),
    Plot("row_fashion", "row_fashion", _model_comparison(
        "row_fashion", ["model", "options", "params", "best val acc (%)"], "best val acc (%)",
        "best validation accuracy (%), mean ± std over 3 seeds", "row-level Fashion-MNIST (T=28)",
        _wrapped_model)),
    Plot("pixel_fashion", "pixel_fashion", _model_comparison(
        "pixel_fashion", ["model", "options", "params", "lr", "seeds", "best val acc (%)"],
        "best val acc (%)", "best validation accuracy (%), mean ± std over seeds",
        "pixel-level Fashion-MNIST (T=784), 10,000 training images", _pixel_label)),
    Plot("pixel_probes_scale", "pixel_probes", _pixel_probes_scale),
    Plot("chi_sweep", "chi_sweep", _chi_sweep),
    Plot("entanglement_random", "entanglement", _entanglement_random),
    Plot("entanglement_trained", "entanglement", _entanglement_trained),
    Plot("scaling_n", "scaling", _scaling_n),
    Plot("scaling_fits", "scaling", _scaling_fits),
    Plot("qlam_ablation", "qlam_ablation", _qlam_ablation),
    Plot("hardware_accuracy", "hardware", _hardware_accuracy),
    Plot("memory_capacity", "memory", _memory_capacity),
    Plot("memory_recall", "memory", _memory_recall),
    Plot("memory_entanglement", "memory", _memory_entanglement),
    Plot("qubits_n", "qubits", _qubits_n),
    Plot("qubits_chi", "qubits", _qubits_chi),
    Plot("qubits_state", "qubits", _qubits_state),
    Plot("qubits_trained", "qubits", _qubits_trained),
]


def draw_all(pages: Path = PAGES, out: Path | None = None, only: list[str] | None = None) -> dict:
    """Draw every plot of :data:`PLOTS` (or those named in ``only``) from the pages in ``pages``
    into ``out`` (default ``pages/img``). Returns ``{name: (png path, page, table)}``."""
    pages, out = Path(pages), Path(out) if out is not None else Path(pages) / "img"
    names = [p.name for p in PLOTS]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise ValueError(f"unknown plot(s) {unknown}; known: {names}")
    out.mkdir(parents=True, exist_ok=True)
    done = {}
    for plot in PLOTS:
        if only and plot.name not in only:
            continue
        page = pages / f"{plot.page}.md"
        if not page.is_file():
            raise ValueError(f"{page}: no such results page (--pages names the docs/results folder)")
        path = out / f"{plot.name}.png"
        try:
            table = plot.draw(parse_tables(page.read_text()), path)
        except ValueError as exc:
            raise ValueError(f"{page}: {exc}") from None
        done[plot.name] = (path, plot.page, table)
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m qlam_tn.experiments.doc_plots",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=Path, default=PAGES, help="the results pages (default %(default)s)")
    ap.add_argument("--out", type=Path, help="where the PNGs go (default PAGES/img)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help=f"some plots: {[p.name for p in PLOTS]}")
    args = ap.parse_args(argv)
    try:
        done = draw_all(args.pages, args.out, args.only)
    except ValueError as exc:
        ap.error(str(exc))
    for name, (path, page, table) in done.items():
        size = path.stat().st_size
        flag = "" if size < MAX_BYTES else f"  (over {MAX_BYTES // 1000} KB)"
        print(f"{path}  {size / 1000:.0f} KB  from {page}.md, table at line {table.first_line} "
              f"(under “{table.heading}”){flag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
