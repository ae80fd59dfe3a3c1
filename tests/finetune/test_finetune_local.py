"""End to end: the tiny CPU configuration through kfp.local with the real SmolLM2-135M.

Every step runs as a KFP component in its own process (SubprocessRunner); the LoRA run must lower
held-out perplexity, and the packaged directory must verify and load as a plain HF causal LM.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("peft")

from mlpipeline.artifacts import verify_manifest  # noqa: E402
from mlpipeline.finetune.local import run_finetune  # noqa: E402

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "llm" / "shakespeare-lora-tiny.yaml"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tiny_config_lowers_heldout_perplexity_and_packages_a_servable_model(tmp_path, smollm2_checkpoint):
    t0 = time.perf_counter()
    result = run_finetune(str(CONFIG), str(tmp_path / "pipeline_root"))
    wall = time.perf_counter() - t0
    print(
        f"\nperplexity {result['perplexity_before']:.3f} -> {result['perplexity_after']:.3f}; "
        f"{result['training']['steps']} steps, train {result['training']['seconds']:.1f} s; pipeline {wall:.1f} s"
    )

    assert result["perplexity_after"] < result["perplexity_before"] and result["improved"]
    assert 1 <= result["training"]["steps"] <= 16 and result["training"]["device"] == "cpu"

    pkg = Path(result["packaged_model"])
    manifest = verify_manifest(pkg)
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "finetune.json"} <= set(manifest["files"])
    lineage = json.loads((pkg / "finetune.json").read_text())
    held = lineage["corpus"]["splits"]["heldout"]["works"]
    assert len(held) == 1 and not set(held) & set(lineage["corpus"]["splits"]["train"]["works"])

    # the LLM server's loader takes it as "a local HF model directory" as is
    from mlpipeline.llm.engine import resolve_checkpoint

    assert resolve_checkpoint(pkg) == pkg

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(pkg)
    model = AutoModelForCausalLM.from_pretrained(pkg).eval()
    prompt = tokenizer("HAMLET.\nTo be, or not to be,", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    new = out[0, prompt["input_ids"].shape[1] :]
    assert len(new) >= 1 and tokenizer.decode(new, skip_special_tokens=True).strip()
