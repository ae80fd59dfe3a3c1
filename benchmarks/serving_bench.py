"""Tabular serving benchmark: our predictor vs stock KServe vs bare FastAPI, side by side.

All three servers load the same packaged churn model and run on 127.0.0.1 in this one process
tree; a bounded async load (fixed request count per cell) measures requests/s and p50/p99 latency
for 1 and 32 rows per request at concurrency 1 and 8. Ratios are against bare FastAPI (the floor:
no framework). Our server does more per request (signature checks, dtype coercion, Prometheus
metrics), which is what the ratio prices.

Run: ``make bench`` or ``.venv/bin/python benchmarks/serving_bench.py [--model-dir DIR] [--requests N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_model(out: Path) -> Path:
    """Package a churn model with the pipeline's own stage functions (fast tuning)."""
    from mlpipeline.config import load_config
    from mlpipeline.stages import evaluate, features, ingest, package, preprocess, split, train, tune

    cfg = load_config(REPO / "configs" / "churn.yaml")
    s = cfg.sections()
    s["tune"] = dict(s["tune"], families=["logistic_regression"], n_trials=2)
    d = out
    ingest.ingest(s["data"], d / "data", d / "schema.json")
    split.split(d / "data", s["data"], s["split"], d / "tr", d / "va", d / "te", d / "split.json")
    preprocess.preprocess(d / "tr", s["data"], s["preprocess"], s["features"], d / "pre", d / "pre.json")
    features.features(d / "tr", d / "pre", s["data"], s["features"], d / "feat", d / "feat.json")
    tune.tune(d / "tr", d / "va", d / "feat", s["data"], s["tune"], s["train"], d / "best.json", d / "trials.csv")
    train.train(d / "tr", d / "feat", d / "best.json", s["data"], s["train"], d / "model")
    evaluate.evaluate(d / "model", d / "va", d / "te", s["data"], s["evaluate"], s["validation"], d / "m.json", d / "sig.json", d / "e.html")
    conf = {**cfg.model_dump(mode="json"), "registry": {"path": str(d / "reg"), "model_name": "churn"}}
    package.package(d / "model", d / "m.json", d / "sig.json", d / "schema.json", d / "split.json", conf, d / "pkg")
    return d / "pkg"


def start(kind: str, model_dir: Path, port: int) -> subprocess.Popen:
    py = sys.executable
    if kind == "ours":
        cmd = [py, "-m", "mlpipeline.serving", str(model_dir), "--port", str(port), "--model-name", "churn"]
    else:
        cmd = [py, str(REPO / "benchmarks" / "baselines.py"), kind, str(model_dir), str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {proc.returncode}")
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{kind} server not ready in 120 s")


async def load_cell(port: int, body: bytes, concurrency: int, n_requests: int) -> dict[str, float]:
    import httpx

    lat: list[float] = []
    url = f"http://127.0.0.1:{port}/v1/models/churn:predict"
    counter = iter(range(n_requests))

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:
        for _ in range(3):  # warm-up
            (await client.post(url, content=body, headers={"content-type": "application/json"})).raise_for_status()

        async def worker() -> None:
            for _ in counter:
                t = time.perf_counter()
                r = await client.post(url, content=body, headers={"content-type": "application/json"})
                lat.append(time.perf_counter() - t)
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    a = np.array(lat) * 1000
    return {"rps": n_requests / wall, "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--requests", type=int, default=400, help="requests per cell")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    args = ap.parse_args()
    import pandas as pd

    from mlpipeline.datasets import load_dataset

    tmp = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    model_dir = args.model_dir or build_model(tmp)
    frame = load_dataset("churn").drop(columns=["churn"]).sample(32, random_state=0)
    bodies = {
        rows: json.dumps({"instances": json.loads(frame.head(rows).to_json(orient="records"))}).encode()
        for rows in (1, 32)
    }
    del pd
    results: dict[tuple[str, int, int], dict[str, float]] = {}
    for kind in ("fastapi", "stock", "ours"):
        port = free_port()
        proc = start(kind, model_dir, port)
        try:
            for rows, body in bodies.items():
                for conc in (1, 8):
                    results[(kind, rows, conc)] = asyncio.run(load_cell(port, body, conc, args.requests))
                    print(kind, rows, conc, {k: round(v, 2) for k, v in results[(kind, rows, conc)].items()}, flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    lines = [
        "## Tabular serving: ours vs stock KServe vs bare FastAPI",
        "",
        f"`{' '.join(['.venv/bin/python', 'benchmarks/serving_bench.py', *sys.argv[1:]])}` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.node()}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.2f} at the end; "
        f"{args.requests} requests per cell, v1 JSON, same packaged churn model in all three.",
        "",
        "| rows/request | concurrency | server | req/s | p50 ms | p99 ms | req/s vs FastAPI | p50 vs FastAPI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rows in (1, 32):
        for conc in (1, 8):
            base = results[("fastapi", rows, conc)]
            for kind, label in (("fastapi", "bare FastAPI"), ("stock", "stock KServe"), ("ours", "mlpipeline")):
                r = results[(kind, rows, conc)]
                lines.append(
                    f"| {rows} | {conc} | {label} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                    f"{r['rps'] / base['rps']:.2f}× | {r['p50_ms'] / base['p50_ms']:.2f}× |"
                )
    section = "\n".join(lines) + "\n"
    write_section(args.results, "## Tabular serving", section)
    print(section)


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace (or append) the section starting with ``heading`` in RESULTS.md."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\nEvery figure below was produced by the command shown with it.\n\n"
    parts = text.split("\n## ")
    kept = [p for p in parts if not ("## " + p).startswith(heading) and not p.startswith(heading)]
    new = "\n## ".join(kept).rstrip("\n") + "\n\n" + section
    from mlpipeline.artifacts import atomic_write_text

    atomic_write_text(path, new)


if __name__ == "__main__":
    main()
