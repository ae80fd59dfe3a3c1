"""Compile configs to KFP IR YAML in pipelines/compiled/ (golden files checked by tests).

Run ``python -m mlpipeline.pipelines.compile`` (or ``mlpipeline compile --all``) to rewrite them.
"""

from __future__ import annotations

import ast
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from mlpipeline.config import PipelineConfig, load_config

REPO = Path(__file__).resolve().parent.parent
COMPILED = REPO / "pipelines" / "compiled"
CONFIGS = REPO / "configs"


_DEFAULT_RE = re.compile(r"^(#\s+\w+: \w+ \[Default: )(.*)(\])$")


def _sorted(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _sorted(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [_sorted(v) for v in obj]
    return obj


def stable_header(text: str) -> str:
    """KFP's header comment prints struct defaults in protobuf map order, which changes from run to
    run; print them with sorted keys so compiling twice gives identical bytes."""
    out = []
    for line in text.splitlines(keepends=True):
        m = _DEFAULT_RE.match(line.rstrip("\n"))
        if m and m.group(2).startswith("{"):
            line = f"{m.group(1)}{_sorted(ast.literal_eval(m.group(2)))!r}{m.group(3)}\n"
        out.append(line)
    return "".join(out)


def compile_pipeline(pipeline_func: Any, out: str | Path) -> Path:
    """Compile a ``@dsl.pipeline`` to IR YAML with stable bytes, written atomically."""
    from kfp import compiler

    from mlpipeline.artifacts import atomic_write_text

    out = Path(out)
    with tempfile.TemporaryDirectory() as d:
        raw = Path(d) / "pipeline.yaml"
        compiler.Compiler().compile(pipeline_func, package_path=str(raw))
        atomic_write_text(out, stable_header(raw.read_text(encoding="utf-8")))
    return out


def compile_config(cfg: PipelineConfig, out: str | Path) -> Path:
    from mlpipeline.pipelines.tabular import build_pipeline

    return compile_pipeline(build_pipeline(cfg), out)


def compile_all(configs_dir: Path = CONFIGS, out_dir: Path = COMPILED) -> list[Path]:
    return [compile_config(load_config(p), out_dir / f"{p.stem}.yaml") for p in sorted(configs_dir.glob("*.yaml"))]


if __name__ == "__main__":
    for p in compile_all():
        print(p.relative_to(REPO), file=sys.stdout)
