"""Self-supervised LoRA fine-tuning of the project's small LLM, as pipeline stages.

Each module is a pure, typed stage the KFP components in ``mlpipeline.components.finetune`` call:

- :mod:`.config` — the frozen config models (``configs/llm/<name>.yaml``).
- :mod:`.corpus` — the Shakespeare texts cleaned, split by whole works, tokenised into fixed blocks.
- :mod:`.modeling` — checkpoint resolution (the LLM server's cached GGUF → HF loader), device and
  precision, token loss, held-out perplexity.
- :mod:`.evaluate` — perplexity before (base) and after (merged model as packaged).
- :mod:`.train` — the peft LoRA loop (seeded, grad accumulation, step / time budget, curve).
- :mod:`.package` — merge the adapter into the weights; model card, lineage and sha256 manifest.
- :mod:`.local` — :func:`~.local.run_finetune`, the whole pipeline under ``kfp.local``.

Importing this package is cheap: torch, transformers and peft are imported inside the stages.
"""
