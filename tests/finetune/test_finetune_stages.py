"""The stage chain (prepare → perplexity → LoRA → merge → perplexity → package) on a tiny random Llama.

Same code paths as the real run, a model small enough to train in seconds. The real SmolLM2 run is
tests/finetune/test_finetune_local.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from mlpipeline.artifacts import verify_manifest  # noqa: E402
from mlpipeline.errors import IntegrityError, TrainingError  # noqa: E402
from mlpipeline.finetune.config import FinetuneConfig  # noqa: E402
from mlpipeline.finetune.corpus import load_corpus, prepare_corpus  # noqa: E402
from mlpipeline.finetune.evaluate import evaluate_base, evaluate_packaged  # noqa: E402
from mlpipeline.finetune.package import merge_lora, package_model  # noqa: E402
from mlpipeline.finetune.train import train_lora  # noqa: E402


def tiny_config(source: Path, **train) -> FinetuneConfig:
    return FinetuneConfig.model_validate(
        {
            "name": "tiny",
            "model": {"source": str(source)},
            "corpus": {"works": ["tempest", "macbeth", "sonnets"], "heldout_works": 1, "block_size": 32,
                       "max_train_blocks": 96, "max_eval_blocks": 24, "seed": 1},
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "o_proj", "down_proj"]},
            "train": {"seed": 3, "max_steps": 24, "batch_size": 8, "grad_accum_steps": 2, "learning_rate": 0.02,
                      "warmup_steps": 2, "device": "cpu", "precision": "fp32", "threads": 1, **train},
            "evaluate": {"batch_size": 16, "device": "cpu", "threads": 1},
            "package": {"model_name": "tiny-shakespeare", "dtype": "float32"},
        }
    )


@pytest.fixture(scope="module")
def chain(tiny_llama, tmp_path_factory):
    """Every stage once, in pipeline order; returns the config, the work dir and each stage's result."""
    cfg = tiny_config(tiny_llama)
    s = cfg.sections()
    d = tmp_path_factory.mktemp("chain")
    out = {"corpus": prepare_corpus(s["model"], s["corpus"], d / "corpus")}
    out["before"] = evaluate_base(s["model"], d / "corpus", s["evaluate"], d / "before.json")
    out["train"] = train_lora(s["model"], d / "corpus", s["lora"], s["train"], d / "adapter", d / "training")
    out["merge"] = merge_lora(s["model"], d / "adapter", s["package"], d / "merged")
    out["after"] = evaluate_packaged(d / "merged", d / "corpus", s["evaluate"], d / "after.json")
    out["package"] = package_model(
        d / "merged", d / "before.json", d / "after.json", d / "training", d / "corpus", cfg.model_dump(mode="json"), d / "packaged"
    )
    return cfg, d, out


def test_corpus_holds_out_whole_works_and_verifies(chain):
    cfg, d, out = chain
    blocks, summary = load_corpus(d / "corpus")
    splits = summary["splits"]
    assert len(splits["heldout"]["works"]) == 1
    assert set(splits["train"]["works"]) | set(splits["heldout"]["works"]) == {"tempest", "macbeth", "sonnets"}
    assert blocks["train"].shape == (96, 32) and blocks["heldout"].shape == (24, 32)
    assert splits["train"]["blocks_available"] > 96
    (d / "corpus" / "train.npy").write_bytes((d / "corpus" / "train.npy").read_bytes()[:-4] + b"\0\0\0\1")
    try:
        with pytest.raises(IntegrityError, match="modified train.npy"):
            load_corpus(d / "corpus")
    finally:
        np.save(d / "corpus" / "train.npy", blocks["train"], allow_pickle=False)
    load_corpus(d / "corpus")


def test_training_lowers_loss_and_heldout_perplexity(chain):
    _, d, out = chain
    tr = out["train"]
    assert tr["steps"] == 24 and tr["stopped_by"] == "max_steps" and tr["tokens"] == 24 * 2 * 8 * 32
    assert tr["final_loss"] < tr["first_loss"]
    assert 0 < tr["trainable_parameters"] < tr["total_parameters"]
    curve = json.loads((d / "training" / "curve.json").read_text())
    assert [r["step"] for r in curve] == list(range(1, 25))
    assert (d / "training" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out["after"]["tokens"] == out["before"]["tokens"] == 24 * 31
    assert out["after"]["perplexity"] < out["before"]["perplexity"]


def test_training_is_seeded(chain, tiny_llama, tmp_path):
    """Same seed, same data → the same adapter weights, bit for bit (CPU)."""
    from safetensors.torch import load_file

    cfg, d, _ = chain
    s = tiny_config(tiny_llama, max_steps=3).sections()
    a = train_lora(s["model"], d / "corpus", s["lora"], s["train"], tmp_path / "a", tmp_path / "ra")
    b = train_lora(s["model"], d / "corpus", s["lora"], s["train"], tmp_path / "b", tmp_path / "rb")
    assert a["final_loss"] == b["final_loss"]
    wa, wb = load_file(tmp_path / "a" / "adapter_model.safetensors"), load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_time_budget_stops_the_loop(chain, tiny_llama, tmp_path):
    _, d, _ = chain
    s = tiny_config(tiny_llama, max_seconds=1e-6).sections()
    out = train_lora(s["model"], d / "corpus", s["lora"], s["train"], tmp_path / "a", tmp_path / "r")
    assert out["steps"] == 1 and out["stopped_by"] == "max_seconds"


def test_merged_model_equals_base_plus_adapter(chain, tiny_llama):
    """merge_and_unload must not change the function: merged logits == peft(base, adapter) logits."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _, d, _ = chain
    ids = torch.from_numpy(load_corpus(d / "corpus")[0]["heldout"][:4]).long()
    with torch.no_grad():
        peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), str(d / "adapter")).eval()
        merged = AutoModelForCausalLM.from_pretrained(d / "merged").eval()
        base = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
        expected, got, untouched = peft_model(input_ids=ids).logits, merged(input_ids=ids).logits, base(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, untouched, atol=1e-3), "the adapter must have changed the model"


def test_package_is_a_verified_plain_hf_directory_with_a_card(chain):
    _, d, out = chain
    pkg = d / "packaged"
    manifest = verify_manifest(pkg)
    files = set(manifest["files"])
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "finetune.json"} <= files
    assert not any(f.startswith("adapter") for f in files), "the adapter is merged, not shipped"
    assert all((pkg / f).stat().st_mode & 0o777 == 0o644 for f in files), "served by other uids: world-readable"
    card = (pkg / "README.md").read_text()
    assert f"{out['before']['perplexity']:.3f}" in card and f"{out['after']['perplexity']:.3f}" in card
    lineage = json.loads((pkg / "finetune.json").read_text())
    assert lineage["perplexity"]["after"]["perplexity"] == out["package"]["perplexity_after"]
    assert lineage["corpus"]["splits"]["heldout"]["works"] == out["after"]["heldout_works"]
    (pkg / "config.json").write_text((pkg / "config.json").read_text() + " ")
    with pytest.raises(IntegrityError, match="modified config.json"):
        verify_manifest(pkg)


def test_packaging_refuses_a_model_that_got_worse(chain, tmp_path):
    cfg, d, _ = chain
    with pytest.raises(TrainingError, match="did not go down"):  # before/after swapped: perplexity went up
        package_model(d / "merged", d / "after.json", d / "before.json", d / "training", d / "corpus",
                      cfg.model_dump(mode="json"), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    lenient = cfg.model_copy(update={"package": cfg.package.model_copy(update={"require_improvement": False})})
    out = package_model(d / "merged", d / "after.json", d / "before.json", d / "training", d / "corpus",
                        lenient.model_dump(mode="json"), tmp_path / "lenient")
    assert out["improved"] is False
    verify_manifest(tmp_path / "lenient")


def test_merge_refuses_a_tampered_adapter(chain, tiny_llama, tmp_path):
    import shutil

    cfg, d, _ = chain
    bad = tmp_path / "adapter"
    shutil.copytree(d / "adapter", bad)
    (bad / "adapter_config.json").write_text("{}")
    with pytest.raises(IntegrityError, match="adapter_config.json"):
        merge_lora(cfg.sections()["model"], bad, cfg.sections()["package"], tmp_path / "merged")


def test_bf16_autocast_path_trains_and_evaluates(chain, tiny_llama, tmp_path):
    """The mixed-precision path the GPU run takes (bf16 autocast), exercised on the CPU."""
    from mlpipeline.finetune.evaluate import evaluate_perplexity

    _, d, out = chain
    s = tiny_config(tiny_llama, max_steps=3, precision="bf16").sections()
    tr = train_lora(s["model"], d / "corpus", s["lora"], s["train"], tmp_path / "a", tmp_path / "r")
    assert tr["precision"] == "bfloat16" and tr["steps"] == 3
    ev = evaluate_perplexity(tiny_llama, d / "corpus", {**s["evaluate"], "precision": "bf16"}, tmp_path / "ppl.json")
    assert ev["precision"] == "bfloat16"
    assert ev["perplexity"] == pytest.approx(out["before"]["perplexity"], rel=0.05), "bf16 logits, fp32 loss: close to fp32"
