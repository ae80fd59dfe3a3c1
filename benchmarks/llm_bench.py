"""LLM serving benchmark (not a test): the real server under 1/8/32 concurrent streams vs plain HF.

Measured in one run, same model (the SmolLM2 checkpoint the server uses), same prompts, same max_tokens,
greedy decoding everywhere:

- bare prefill: one forward pass over the 1-stream prompt (what TTFT cannot beat);
- sequential HF ``generate`` over the first 8 prompts, one after another;
- a static HF batch of those 8 prompts (left-padded ``generate``);
- the server (``python -m mlpipeline.llm`` on a free loopback port) under 1, 8 and 32 concurrent SSE streams:
  client-side TTFT (request sent → first token chunk), ITL (gaps between token chunks) and tokens/s
  (completion tokens from ``usage`` over the wall time of the round).

    .venv/bin/python benchmarks/llm_bench.py [--max-tokens 64] [--write-results]

``--write-results`` replaces the ``## LLM serving`` section of benchmarks/RESULTS.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
HEADING = "## LLM serving"
MODEL_NAME = "smollm2-bench"

PROMPTS = [
    "Once upon a time, in a land far away, there lived a",
    "The history of the Roman Empire begins with",
    "Here is a recipe for a simple tomato soup. First,",
    "The three most important ideas in physics are",
    "Dear hiring manager, I am writing to apply for",
    "In the year 2050, cities will look very different because",
    "The best way to learn a new programming language is",
    "A short guide to keeping houseplants alive: start by",
    "The old lighthouse keeper looked out at the sea and",
    "Photosynthesis is the process by which plants",
    "My favourite holiday memory is the time we",
    "To train for a marathon, a beginner should",
    "The main causes of the French Revolution were",
    "A good night's sleep depends on several habits, such as",
    "The detective opened the door slowly and saw",
    "Volcanoes form when",
]


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- HF baselines
class HFBaselines:
    """Plain transformers on the same checkpoint, in this process."""

    def __init__(self, checkpoint: Path, max_tokens: int, threads: int | None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.tok = AutoTokenizer.from_pretrained(checkpoint)
        self.tok.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(
            checkpoint, dtype=torch.float32, attn_implementation="sdpa"
        ).eval()
        self.eos = self.tok.eos_token_id
        self.gen_kwargs = dict(max_new_tokens=max_tokens, do_sample=False, pad_token_id=self.eos)
        with torch.inference_mode():  # warm-up
            self.model.generate(
                self.tok(PROMPTS[0], return_tensors="pt").input_ids,
                **{**self.gen_kwargs, "max_new_tokens": 4},
            )

    def _new_tokens(self, seq: Any, prompt_len: int) -> int:
        gen = seq[prompt_len:].tolist()
        return gen.index(self.eos) + 1 if self.eos in gen else len(gen)

    def measure(self) -> dict[str, float]:
        import torch

        out: dict[str, float] = {}
        prompts = PROMPTS[:8]
        with torch.inference_mode():
            ids0 = self.tok(PROMPTS[0], return_tensors="pt").input_ids
            times = []
            for _ in range(20):  # bare prefill of the 1-stream prompt
                t0 = time.perf_counter()
                self.model(input_ids=ids0, use_cache=True, logits_to_keep=1)
                times.append(time.perf_counter() - t0)
            out["prefill_s"] = statistics.median(times)
            out["prompt_tokens"] = ids0.shape[1]
            t0 = time.perf_counter()
            n = 0
            for p in prompts:
                ids = self.tok(p, return_tensors="pt").input_ids
                n += self._new_tokens(self.model.generate(ids, **self.gen_kwargs)[0], ids.shape[1])
            out["seq_s"], out["seq_tokens"] = time.perf_counter() - t0, n
            batch = self.tok(prompts, return_tensors="pt", padding=True)
            t0 = time.perf_counter()
            res = self.model.generate(**batch, **self.gen_kwargs)
            out["batch_s"] = time.perf_counter() - t0
            width = batch.input_ids.shape[1]
            out["batch_tokens"] = sum(self._new_tokens(r, width) for r in res)
        out["seq_tps"] = out["seq_tokens"] / out["seq_s"]
        out["batch_tps"] = out["batch_tokens"] / out["batch_s"]
        return out


# --------------------------------------------------------------------------- server
@dataclass
class StreamResult:
    ttft: float
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0


async def one_stream(client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int) -> StreamResult:
    body = {"model": MODEL_NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    t0 = time.perf_counter()
    first: float | None = None
    last = t0
    res = StreamResult(ttft=float("nan"))
    async with client.stream("POST", url, json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            now = time.perf_counter()
            ev = json.loads(line[6:])
            if "error" in ev:
                raise RuntimeError(ev["error"])
            if ev.get("usage"):
                res.tokens = ev["usage"]["completion_tokens"]
            if ev["choices"] and ev["choices"][0]["text"]:
                if first is None:
                    first = now
                    res.ttft = now - t0
                else:
                    res.gaps.append(now - last)
                last = now
    return res


async def server_round(base: str, concurrency: int, rounds: int, max_tokens: int) -> dict[str, Any]:
    url = f"{base}/openai/v1/completions"
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    results: list[StreamResult] = []
    wall = 0.0
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        await one_stream(client, url, PROMPTS[0], 4)  # warm the connection pool and the server
        for r in range(rounds):
            prompts = [PROMPTS[(r * concurrency + i) % len(PROMPTS)] for i in range(concurrency)]
            if concurrency == 1:
                prompts = [PROMPTS[0]]  # TTFT at 1 stream is compared with the bare prefill of this prompt
            t0 = time.perf_counter()
            results += await asyncio.gather(*(one_stream(client, url, p, max_tokens) for p in prompts))
            wall += time.perf_counter() - t0
    ttfts = [x.ttft for x in results]
    gaps = [g for x in results for g in x.gaps]
    tokens = sum(x.tokens for x in results)
    return {
        "requests": len(results),
        "tokens": tokens,
        "wall_s": wall,
        "tps": tokens / wall,
        "ttfts": ttfts,
        "gaps": gaps,
    }


def start_server(
    checkpoint: Path, port: int, max_tokens: int, log: Path, threads: int | None
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mlpipeline.llm", "--llm-model-dir", str(checkpoint),
           "--served-model-name", MODEL_NAME, "--http-port", str(port), "--bind-host", "127.0.0.1",
           "--max-running-seqs", "32", "--max-waiting-requests", "64", "--max-new-tokens", str(max(max_tokens, 16))]  # fmt: skip
    if threads:
        cmd += ["--torch-threads", str(threads)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openai/v1/models", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not start")


# --------------------------------------------------------------------------- report
def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (f"{platform.node()}: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), no GPU used")  # fmt: skip


def render(
    args: argparse.Namespace,
    hf: list[dict[str, float]],
    srv: dict[int, list[dict[str, Any]]],
    loads: list[str],
) -> str:
    med = statistics.median
    prefill = med(t["prefill_s"] for t in hf)

    def spread(xs: list[float]) -> str:
        return f"{med(xs):.1f} ({min(xs):.1f}–{max(xs):.1f})" if len(xs) > 1 else f"{xs[0]:.1f}"

    lines = [
        HEADING,
        "",
        f"Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}. Machine: {machine()}.",
        f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/llm_bench.py', *sys.argv[1:]])}`",
        f"Model: SmolLM2-135M-Instruct (packaged GGUF → cached HF checkpoint), fp32 on CPU, greedy, "
        f"max_tokens={args.max_tokens}, the same prompts everywhere (HF baselines: the first 8). "
        f"{args.trials} interleaved trials (HF baselines, then the server at each concurrency, per trial), "
        "so every configuration sees similar machine load.",
        f"Load average (1/5/15 min) at start / after each trial: {' / '.join(loads)} "
        "(other engineers' jobs share these 2 cores).",
        "",
        "tokens/s: median over trials (min–max); ratios: median of per-trial ratios; TTFT/ITL: percentiles over "
        "all requests / token gaps of all trials, measured by the client (request sent → first token chunk; "
        "gaps between token chunks).",
        "",
        "| configuration | requests | tokens/s | × sequential | × static batch 8 | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| HF `generate`, sequential | {8 * len(hf)} | {spread([t['seq_tps'] for t in hf])} | 1.00 | "
        f"{med(t['seq_tps'] / t['batch_tps'] for t in hf):.2f} | | | | |",
        f"| HF `generate`, static batch of 8 | {8 * len(hf)} | {spread([t['batch_tps'] for t in hf])} | "
        f"{med(t['batch_tps'] / t['seq_tps'] for t in hf):.2f} | 1.00 | | | | |",
    ]
    summary: dict[int, dict[str, float]] = {}
    for c, trials in srv.items():
        ttfts = [x for t in trials for x in t["ttfts"]]
        gaps = [x for t in trials for x in t["gaps"]]
        r = {
            "x_seq": med(t["tps"] / h["seq_tps"] for t, h in zip(trials, hf, strict=True)),
            "x_batch": med(t["tps"] / h["batch_tps"] for t, h in zip(trials, hf, strict=True)),
            "ttft_p50": pct(ttfts, 0.5),
            "ttft_p99": pct(ttfts, 0.99),
            "itl_p50": pct(gaps, 0.5),
            "itl_p99": pct(gaps, 0.99),
            "ttft_minus_prefill": med(
                pct(t["ttfts"], 0.5) - h["prefill_s"] for t, h in zip(trials, hf, strict=True)
            ),
        }
        summary[c] = r
        lines.append(
            f"| server, {c} concurrent stream{'s' if c > 1 else ''} | {sum(t['requests'] for t in trials)} | "
            f"{spread([t['tps'] for t in trials])} | {r['x_seq']:.2f} | {r['x_batch']:.2f} | "
            f"{r['ttft_p50'] * 1e3:.0f} ms | {r['ttft_p99'] * 1e3:.0f} ms | {r['itl_p50'] * 1e3:.0f} ms | "
            f"{r['itl_p99'] * 1e3:.0f} ms |"
        )
    lines += [
        "",
        f"Bare prefill of the 1-stream prompt ({hf[0]['prompt_tokens']:.0f} tokens; one forward pass, median of 20 "
        f"per trial, median over trials): {prefill * 1e3:.1f} ms.",
        "",
        "Targets (CPU):",
    ]
    if 8 in summary:
        r = summary[8]
        lines.append(
            f"- 8 streams ≥ 4× sequential: {r['x_seq']:.2f}× — {'met' if r['x_seq'] >= 4 else 'missed'}."
        )
        lines.append(
            f"- 8 streams ≥ 0.9× static batch of 8: {r['x_batch']:.2f}× — {'met' if r['x_batch'] >= 0.9 else 'missed'}."
        )
    if 1 in summary:
        d = summary[1]["ttft_minus_prefill"] * 1e3
        lines.append(
            f"- TTFT at 1 stream within 10 ms of bare prefill: p50 TTFT − prefill = {d:.1f} ms "
            f"(median over trials) — {'met' if d <= 10 else 'missed'}."
        )
    return "\n".join(lines) + "\n"


def write_section(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    start = text.find(HEADING + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        nxt = text.find("\n## ", start + len(HEADING))
        rest = text[nxt + 1 :] if nxt != -1 else ""
        text = text[:start] + section + ("\n" + rest if rest else "")
    RESULTS.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--rounds-1", type=int, default=8, help="sequential requests at concurrency 1, per trial")
    ap.add_argument("--rounds", type=int, default=1, help="rounds at concurrency > 1, per trial")
    ap.add_argument("--trials", type=int, default=3, help="interleaved repetitions of the whole set")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads, HF baselines and server alike (default: torch's)",
    )
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.path.insert(0, str(ROOT / "src"))
    from mlpipeline.llm.engine import resolve_checkpoint

    def load_avg() -> str:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())

    checkpoint = resolve_checkpoint(None)
    loads = [load_avg()]
    port = free_port()
    log = Path("/tmp") / f"llm_bench_server_{port}.log"
    proc = start_server(checkpoint, port, args.max_tokens, log, args.threads)
    hf_trials: list[dict[str, float]] = []
    srv: dict[int, list[dict[str, Any]]] = {c: [] for c in args.concurrency}
    try:
        baselines = HFBaselines(checkpoint, args.max_tokens, args.threads)
        for trial in range(args.trials):
            hf_trials.append(baselines.measure())
            print(f"trial {trial} HF", json.dumps(hf_trials[-1]), flush=True)
            for c in args.concurrency:
                rounds = args.rounds_1 if c == 1 else args.rounds
                r = asyncio.run(server_round(f"http://127.0.0.1:{port}", c, rounds, args.max_tokens))
                srv[c].append(r)
                print(f"trial {trial} server c={c}: {r['tps']:.1f} tok/s, TTFT p50 {pct(r['ttfts'], 0.5) * 1e3:.0f} ms, "
                      f"ITL p50 {pct(r['gaps'], 0.5) * 1e3:.0f} ms", flush=True)  # fmt: skip
            loads.append(load_avg())
    finally:
        proc.terminate()
        proc.wait(30)
    section = render(args, hf_trials, srv, loads)
    print(section)
    if args.write_results:
        write_section(section)


if __name__ == "__main__":
    main()
