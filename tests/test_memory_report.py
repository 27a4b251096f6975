"""``qlam memory-report`` (experiments/memory_report.py): the numbers behind docs/results/memory.md.

The centre-bond entropy it streams is checked against a numpy SVD of the dense memory after each
token; its position scoring against a hand count; the capacity and copy tables against the run
folders' own metrics and a plain recomputation.
"""
import json
import math

import numpy as np
import pytest
import torch

from qlam_tn.experiments import memory_report, tasks, train
from qlam_tn.models import build
from qlam_tn.models.heads import IGNORE_INDEX


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_centre_entropy_is_the_dense_memory_half_chain_entropy():
    torch.manual_seed(0)
    model = build("qlam", 8, 12, vocab_size=12, outputs="per_position", n_qubits=6,
                  backend="statevector", entangler="su4", encoding_scale=1.0).double()
    x = torch.randint(0, 12, (3, 5))
    got = memory_report.centre_entropy(model, x)
    assert got.shape == (3, 5)
    state = model.init_state(3)
    for t in range(5):
        _, state = model.step(x[:, t], state)
        psi = state.memory.psi.detach().numpy().reshape(3, 8, 8)   # qubits 0-2 | qubits 3-5
        for b in range(3):
            s = np.linalg.svd(psi[b], compute_uv=False) ** 2
            s = s[s > 1e-15]
            assert float(got[b, t]) == pytest.approx(float(-(s * np.log2(s)).sum()), abs=1e-9)
    assert float(got.max()) > 0.1   # the entangler does entangle: the check above is not 0 == 0


class _Fixed(torch.nn.Module):
    """Per-position logits that predict ``guess`` at every position."""

    def __init__(self, guess, classes):
        super().__init__()
        self.guess, self.classes = guess, classes

    def forward_sequence(self, x):
        return 5.0 * torch.nn.functional.one_hot(self.guess[: x.shape[0]], self.classes).double()


def test_score_positions_counts_labelled_positions_by_hand():
    y = torch.tensor([[IGNORE_INDEX, 1, 2, 0], [0, IGNORE_INDEX, 1, 1]])
    guess = torch.tensor([[0, 1, 0, 0], [0, 0, 1, 2]])
    logits = memory_report.predict(_Fixed(guess, 3), torch.zeros(2, 4, dtype=torch.long))
    acc, ce = memory_report.score_positions(logits, y)
    # labelled: (0,1) hit, (0,2) miss, (0,3) hit, (1,0) hit, (1,2) hit, (1,3) miss -> 4/6
    assert acc == pytest.approx(4 / 6)
    hit = -math.log(math.exp(5) / (math.exp(5) + 2))   # cross-entropy of a right guess
    miss = -math.log(1 / (math.exp(5) + 2))
    assert ce == pytest.approx((4 * hit + 2 * miss) / 6)
    # only the last two positions: (0,2) miss, (0,3) hit, (1,2) hit, (1,3) miss
    acc, _ = memory_report.score_positions(logits, y, slice(2, 4))
    assert acc == pytest.approx(2 / 4)


def _tiny_runs(folder, dataset, data_cfg, seeds):
    for seed in seeds:
        assert train.main(["--model", "gru", "--model-cfg", "hidden_size=8", "--embed-dim", "8",
                           "--dataset", dataset, "--data-cfg", *data_cfg, "--n-train", "64", "--n-val", "32",
                           "--n-test", "48", "--epochs", "1", "--batch-size", "16", "--threads", "1",
                           "--no-progress", "--seed", str(seed), "--out", str(folder),
                           "--name", f"gru-x-s{seed}"]) == 0


def test_capacity_table_is_the_runs_own_test_accuracy(tmp_path, capsys):
    _tiny_runs(tmp_path, "mqar", ["seq_len=16", "num_pairs=2", "vocab_size=24"], [0, 1])
    assert memory_report.main(["capacity", str(tmp_path), "--threads", "1"]) == 0
    text = (tmp_path / "memory_capacity.md").read_text()
    accs = [json.loads((tmp_path / f"gru-x-s{s}" / "metrics.json").read_text())["test"]["acc"] for s in (0, 1)]
    mean, std = np.mean(accs), np.std(accs, ddof=1)
    row = next(line for line in text.splitlines() if line.startswith("| gru |"))
    # params, state (a GRU of hidden 8 carries h: 8 floats), then K=2
    assert row.split("|")[3].strip() == "8"
    assert f"{100 * mean:.1f} ± {100 * std:.1f} (2)" in row


def test_copy_table_recomputes_recall_of_the_ten_symbols(tmp_path):
    _tiny_runs(tmp_path, "copy_memory", ["seq_len=25"], [0])
    assert memory_report.main(["copy", str(tmp_path), "--threads", "1"]) == 0
    text = (tmp_path / "memory_copy.md").read_text()
    # a plain recount of the last ten positions of the test split
    from qlam_tn.experiments.evaluate import load_model
    model, _ = load_model(tmp_path / "gru-x-s0")
    x, y = tasks.make("copy_memory", 48, tasks.split_seed(0, "test"), seq_len=25)
    with torch.no_grad():
        pred = model(torch.as_tensor(x)).argmax(-1).numpy()
    recall = float((pred[:, -10:] == y[:, -10:]).mean())
    row = next(line for line in text.splitlines() if line.startswith("| gru |"))
    assert f"{100 * recall:.1f} ± 0.0 (1)" in row
    assert "baseline 0.8318" in text   # 10·log 8 / 25
