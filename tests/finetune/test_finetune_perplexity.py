"""Perplexity is exp(mean next-token NLL) over every held-out prediction, independent of batching."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mlpipeline.errors import ArtifactError  # noqa: E402
from mlpipeline.finetune.modeling import autocast_dtype, perplexity, select_device, token_nll  # noqa: E402
from mlpipeline.finetune.train import batch_order, lr_factor  # noqa: E402


class Bigram(torch.nn.Module):
    """logits[b, t] = table[input_ids[b, t]]: a model whose every probability is known in closed form."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, input_ids: torch.Tensor):  # noqa: D401 - HF-like output object
        return type("Out", (), {"logits": self.table[input_ids]})()


def test_uniform_model_has_perplexity_equal_to_the_vocabulary_size():
    vocab = 7
    blocks = np.random.default_rng(0).integers(0, vocab, size=(5, 6)).astype(np.int32)
    out = perplexity(Bigram(torch.zeros(vocab, vocab)), blocks, batch_size=2, device=torch.device("cpu"))
    assert out["perplexity"] == pytest.approx(vocab, rel=1e-6)
    assert out["tokens"] == 5 * 5 and out["blocks"] == 5


def test_known_bigram_case_equals_exp_of_mean_nll_by_hand():
    table = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [-2.0, 1.0, 0.0]])
    blocks = np.array([[0, 1, 2, 2], [2, 0, 0, 1]], dtype=np.int32)
    nll = []
    for row in blocks:
        for prev, nxt in zip(row[:-1], row[1:], strict=True):
            logits = table[prev].tolist()
            log_z = math.log(sum(math.exp(v) for v in logits))
            nll.append(log_z - logits[nxt])
    expected = math.exp(sum(nll) / len(nll))
    for batch_size in (1, 2, 5):  # per-token sums, not per-batch means: the batch size must not matter
        out = perplexity(Bigram(table.clone()), blocks, batch_size=batch_size, device=torch.device("cpu"))
        assert out["perplexity"] == pytest.approx(expected, rel=1e-6)
        assert out["mean_nll"] == pytest.approx(sum(nll) / len(nll), rel=1e-6)
        assert out["tokens"] == 6


def test_token_nll_sums_and_counts_shifted_predictions():
    logits = torch.zeros(2, 4, 5)
    ids = torch.tensor([[1, 2, 3, 4], [0, 0, 0, 0]])
    nll, n = token_nll(logits, ids)
    assert n == 6 and float(nll) == pytest.approx(6 * math.log(5))


def test_perplexity_restores_training_mode_and_takes_no_grad():
    model = Bigram(torch.randn(4, 4))
    model.train()
    perplexity(model, np.zeros((2, 3), dtype=np.int32), 1, torch.device("cpu"))
    assert model.training and model.table.grad is None


@pytest.mark.parametrize("shape", [(0, 4), (3, 1)])
def test_perplexity_refuses_empty_or_one_token_blocks(shape):
    with pytest.raises(ArtifactError, match="perplexity needs"):
        perplexity(Bigram(torch.zeros(3, 3)), np.zeros(shape, dtype=np.int32), 2, torch.device("cpu"))


def test_learning_rate_schedule_warms_up_then_decays_to_zero():
    f = lr_factor("cosine", warmup_steps=4, max_steps=20)
    assert [f(i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and f(12) == pytest.approx(0.5) and f(20) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor("linear", 0, 10)(5) == pytest.approx(0.5)
    assert lr_factor("constant", 2, 10)(9) == 1.0


def test_batch_order_is_a_seeded_permutation_per_epoch():
    it = batch_order(10, 4, seed=3)
    epoch = np.concatenate([next(it) for _ in range(3)])  # 4 + 4 + 2
    assert sorted(epoch.tolist()) == list(range(10))
    again = batch_order(10, 4, seed=3)
    assert np.array_equal(np.concatenate([next(again) for _ in range(3)]), epoch)


def test_precision_choice():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "auto") is None, "auto is fp32 on a CPU"
    assert autocast_dtype(cpu, "fp32") is None
    assert autocast_dtype(cpu, "bf16") is torch.bfloat16


def test_device_choice_refuses_a_missing_gpu():
    assert select_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert select_device("auto").type == "cpu"
        with pytest.raises(ArtifactError, match="no CUDA device"):
            select_device("cuda")
