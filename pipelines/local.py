"""Run a compiled-in-memory pipeline under an already initialised ``kfp.local`` and find its run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlpipeline.errors import MLPipelineError


def run_pipeline(pipeline: Any, arguments: dict[str, Any], root: Path, what: str = "pipeline") -> tuple[Path, float]:
    """Call ``pipeline(**arguments)`` (kfp.local writes under ``root``); return (run directory, seconds).

    A failed task raises :class:`MLPipelineError` naming the run directory that holds its logs.
    """
    before = set(root.iterdir())
    t0 = time.perf_counter()
    try:
        pipeline(**arguments)
    except RuntimeError as e:
        new = sorted(set(root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
        where = f"; artifacts and logs under {new[-1]}" if new else ""
        raise MLPipelineError(f"{what} failed: {e}{where}") from e
    seconds = time.perf_counter() - t0
    new_dirs = [p for p in set(root.iterdir()) - before if p.is_dir()]
    if not new_dirs:
        raise MLPipelineError(f"kfp.local left no run directory under {root}")
    return max(new_dirs, key=lambda p: p.stat().st_mtime), seconds
