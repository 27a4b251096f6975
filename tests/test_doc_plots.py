"""The results pages' plots: the markdown table parser against hand-written snippets, and the
generator run on the real pages."""
import pathlib
import re

import pytest

from qlam_tn.experiments import doc_plots as dp
from qlam_tn.experiments.doc_plots import Number, find_table, parse_number, parse_tables, split_alternatives

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "results"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("cell, expected", [
    ("95.10", Number(95.10)),
    ("**95.10 ± 0.35**", Number(95.10, std=0.35)),
    (" 58.46 ± 5.78 ", Number(58.46, std=5.78)),
    ("341,551", Number(341551.0)),
    ("1,140 (2,550)", Number(1140.0, bracketed=2550.0)),
    ("6,910 (5,550)", Number(6910.0, bracketed=5550.0)),
    ("3.02 (16.1)", Number(3.02, bracketed=16.1)),
    ("6.36 (8.4%)", Number(6.36, bracketed=8.4)),
    ("80.00 (29)", Number(80.0, bracketed=29.0)),
    ("84.85 (statevector)", Number(84.85, note="statevector")),
    ("0.03 (the study's cell)", Number(0.03, note="the study's cell")),
    ("5.26 ± 0.50 (still growing: 6.0 at 1,000)", Number(5.26, std=0.5, note="still growing: 6.0 at 1,000")),
    ("16,831†", Number(16831.0)),
    ("26,625*", Number(26625.0)),
    ("8e-12", Number(8e-12)),
    ("4e-11", Number(4e-11)),
    ("−0.5", Number(-0.5)),
    ("**0.75**", Number(0.75)),
    ("`12`", Number(12.0)),
])
def test_numbers_are_read_as_the_page_writes_them(cell, expected):
    assert parse_number(cell) == expected


@pytest.mark.parametrize("cell", [
    "", "–", "-", "stopped after 2 epochs", "0.742 after 2 epochs, against 0.804", "81.45 / 82.47 / 79.87",
    "skipped: predicted ≈ 6.7 s per token (> 5 s)", "n=8", "exact", "1 (product state) x", "12,34",
])
def test_a_cell_that_is_not_one_number_is_refused(cell):
    assert parse_number(cell) is None


def test_the_written_text_is_kept_with_its_trailing_zeros():
    assert parse_number("**95.10 ± 0.35**").text == "95.10 ± 0.35"
    assert parse_number("1,140 (2,550)").text == "1,140"
    assert parse_number("0.70").text == "0.70"


def test_alternatives_split_after_bracketed_remarks_are_dropped():
    cell = "1.113 ± 0.018 / 1.116 ± 0.042 (was 1.157 / 1.021)"
    assert split_alternatives(cell) == ["1.113 ± 0.018", "1.116 ± 0.042"]
    assert [parse_number(p) for p in split_alternatives(cell)] == [Number(1.113, 0.018), Number(1.116, 0.042)]
    assert split_alternatives("**1.052 ± 0.021**") == ["**1.052 ± 0.021**"]


SNIPPET = """# A page

| | |
|---|---|
| Reproduce | `qlam study x.toml` |

Some text with a | pipe that is no table.

## Results

| model | params | test acc (%) | note |
|---|--:|--:|---|
| **QLAM**, `su4` | 6,697 | **95.10 ± 0.35** | a \\| b |
| GRU | 6,282 | 96.42 ± 0.28 |
| LSTM | 6,436 | – | x | extra |

After the table.

### Fits

|time vs|slope|
|:--|--:|
|n|1.113 ± 0.018 / 1.116 ± 0.042 (was 1.157 / 1.021)|
"""


def test_tables_are_found_with_their_heading_rows_and_lines():
    tables = parse_tables(SNIPPET)
    assert len(tables) == 3
    meta, results, fits = tables
    assert meta.heading == "A page" and meta.header == ("", "")
    assert results.heading == "Results"
    assert results.header == ("model", "params", "test acc (%)", "note")
    assert results.first_line == 11 and results.last_line == 15
    assert SNIPPET.splitlines()[results.last_line - 1].startswith("| LSTM")
    # An escaped pipe stays in its cell; a short row is padded, a long one cut to the header.
    assert results.rows[0] == ("**QLAM**, `su4`", "6,697", "**95.10 ± 0.35**", "a | b")
    assert results.rows[1] == ("GRU", "6,282", "96.42 ± 0.28", "")
    assert results.rows[2] == ("LSTM", "6,436", "–", "x")
    assert results.texts("model") == ["QLAM, su4", "GRU", "LSTM"]
    assert results.numbers("params") == [Number(6697.0), Number(6282.0), Number(6436.0)]
    assert results.numbers("test acc") == [Number(95.10, 0.35), Number(96.42, 0.28), None]
    assert fits.heading == "Fits" and fits.rows == (("n", "1.113 ± 0.018 / 1.116 ± 0.042 (was 1.157 / 1.021)"),)


def test_find_table_by_columns_and_heading_with_clear_errors():
    tables = parse_tables(SNIPPET)
    assert find_table(tables, ["model", "test acc (%)"]).heading == "Results"
    assert find_table(tables, ["time vs"], heading="Fits").heading == "Fits"
    with pytest.raises(ValueError, match=r"no table with columns \['time vs'\] under a heading starting 'Results'"):
        find_table(tables, ["time vs"], heading="Results")
    with pytest.raises(ValueError, match=r"has no column 'seeds'; its columns: \['model', 'params'"):
        tables[1].column("seeds")


def test_unknown_plot_names_and_missing_pages_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown plot\(s\) \['nope'\]"):
        dp.draw_all(PAGES, tmp_path, only=["nope"])
    with pytest.raises(ValueError, match="no such results page"):
        dp.draw_all(tmp_path, tmp_path / "img", only=["chi_sweep"])
    (tmp_path / "chi_sweep.md").write_text("# χ\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    with pytest.raises(ValueError, match=r"chi_sweep.md: no table with columns"):
        dp.draw_all(tmp_path, tmp_path / "img", only=["chi_sweep"])


EXPECTED = {  # plot -> (page, heading of the table it is drawn from)
    "row_mnist10k": ("row_mnist10k", "Results"),
    "row_fashion": ("row_fashion", "Row-level Fashion-MNIST"),
    "pixel_fashion": ("pixel_fashion", "10,000 training images, 10 epochs"),
    "pixel_probes_scale": ("pixel_probes", "How far should the reservoir's rotations reach?"),
    "chi_sweep": ("chi_sweep", "Accuracy versus bond dimension χ"),
    "entanglement_random": ("entanglement", "A random memory on MNIST pixels"),
    "entanglement_trained": ("entanglement", "Trained versus random memories"),
    "scaling_n": ("scaling", "Per token"),
    "scaling_fits": ("scaling", "Fits"),
    "qlam_ablation": ("qlam_ablation", "Small runs (2,000 training images, 6 epochs)"),
    "hardware_accuracy": ("hardware", "Accuracy versus shots (`restart`, reads at every token)"),
    "memory_capacity": ("memory", "Capacity: multi-query associative recall (Zoology's MQAR)"),
    "memory_recall": ("memory", "Induction heads"),
    "memory_entanglement": ("memory", "Entanglement while storing and recalling"),
    "qubits_n": ("qubits", "Accuracy against qubits n"),
    "qubits_chi": ("qubits", "Accuracy against qubits n"),
    "qubits_state": ("qubits", "The classical line: GRU at the same state size"),
    "qubits_trained": ("qubits", "Trained memories: truncation and entanglement"),
}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    out = tmp_path_factory.mktemp("img")
    return out, dp.draw_all(PAGES, out)


def test_every_plot_is_drawn_from_its_table_as_a_small_valid_png(drawn):
    from PIL import Image

    out, done = drawn
    assert {name: (page, table.heading) for name, (_, page, table) in done.items()} == EXPECTED
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.png" for name in EXPECTED)
    for name, (path, _, _) in done.items():
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert len(data) < dp.MAX_BYTES, f"{name}: {len(data)} bytes"
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            width, height = image.size
            assert 500 <= width <= 1000 and 300 <= height <= 800, (name, image.size)
            # Not blank: a plot has ink (the background is white).
            grey = image.convert("L")
            assert grey.getextrema()[0] < 100, name


def test_the_tables_hold_the_numbers_the_pages_quote(drawn):
    # Values read by hand from the pages: the parser and the table choice agree with them.
    _, done = drawn
    row = done["row_mnist10k"][2]
    assert row.numbers("test acc (%)")[0] == Number(95.10, 0.35)
    assert row.texts("model")[5] == "GRU"
    assert done["chi_sweep"][2].numbers("trained exact")[0] == Number(12.40)
    scaling = done["scaling_n"][2]
    assert scaling.numbers("fwd")[4] == Number(1140.0, bracketed=2550.0)
    assert scaling.numbers("fwd+bwd")[0] == Number(60.9, bracketed=54.8)
    capacity = done["memory_capacity"][2]
    assert capacity.texts("model")[0] == "gru" and capacity.numbers("K=2")[0] == Number(49.1, 0.5, bracketed=3.0)
    assert capacity.numbers("state (floats)")[2] == Number(256.0)
    entropy = done["memory_entanglement"][2]
    assert entropy.texts("memory")[:2] == ["trained", "random"] and entropy.numbers("t=32")[0] == Number(2.19)
    qubits = done["qubits_n"][2]
    assert qubits.texts("dataset")[2] == "mnist10k" and qubits.texts("χ")[2] == "4"
    assert qubits.numbers("n=64")[2] == Number(79.73, 0.52, bracketed=3.0)
    assert done["qubits_state"][2].numbers("h=32")[1] == Number(87.35, 1.95, bracketed=3.0)
    assert done["qubits_trained"][2].numbers("centre entropy, trained")[2] == Number(1.024, 0.362, bracketed=3.0)


def test_every_page_shows_its_plots_under_the_table_they_are_drawn_from(drawn):
    _, done = drawn
    for name, (_, page, table) in done.items():
        lines = (PAGES / f"{page}.md").read_text().splitlines()
        at = [i + 1 for i, line in enumerate(lines) if re.match(rf"!\[[^\]]+\]\(img/{name}\.png\)$", line)]
        assert len(at) == 1, f"{page}.md: one image line for img/{name}.png, found at {at}"
        after = lines[table.last_line:at[0] - 1]
        assert not any(line.lstrip().startswith(("|", "#")) for line in after), (
            f"{page}.md: img/{name}.png is not right under its table (line {table.first_line})")
        assert lines[at[0] + 1].startswith("Plot: `python -m qlam_tn.experiments.doc_plots` draws it")


def test_the_committed_images_are_the_generators():
    committed = sorted(p.stem for p in (PAGES / "img").glob("*.png"))
    assert committed == sorted(EXPECTED)
    for name in committed:
        assert (PAGES / "img" / f"{name}.png").stat().st_size < dp.MAX_BYTES
