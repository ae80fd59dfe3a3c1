"""``mlpipeline`` command line. Heavy modules are imported inside each command, so ``--help`` is instant.

Every command reports a project error (:class:`~mlpipeline.errors.MLPipelineError`) as one line on
stderr and exits 2; it never prints a traceback for a user's mistake.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from mlpipeline.errors import MLPipelineError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Config-driven ML pipelines on Kubeflow, served with KServe.")


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MLPipelineError as e:
            _fail(str(e))

    return wrapper


def _local_config(config: Path) -> Any:
    """Load a config for a local run: registry and deploy output paths become absolute (KFP tasks
    run in other working directories)."""
    from mlpipeline.config import load_config

    cfg = load_config(config)
    reg = cfg.registry.model_copy(update={"path": str(Path(cfg.registry.path).resolve())})
    dep = cfg.deploy.model_copy(update={"output_dir": str(Path(cfg.deploy.output_dir).resolve())})
    return cfg.model_copy(update={"registry": reg, "deploy": dep})


def _find_outputs(run_dir: Path) -> dict[str, Path]:
    """Paths of the interesting artifacts in a kfp.local run directory."""
    wanted = {
        "eda_report": ("eda-op", "report"),
        "evaluation_report": ("evaluate-op", "report"),
        "evaluation": ("evaluate-op", "evaluation"),
        "gate_decision": ("gate-op", "decision"),
        "packaged_model": ("package-op", "packaged"),
        "deploy_manifest": ("deploy-op", "manifest"),
        "test_split": ("split-op", "test"),
    }
    found = {}
    for key, (task, name) in wanted.items():
        p = run_dir / task / name
        if p.exists():
            found[key] = p
    return found


def _summary(cfg: Any, run_dir: Path, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    from mlpipeline.artifacts import read_json

    out = _find_outputs(run_dir)
    table = Table(title=f"{cfg.name}: finished in {seconds:.0f} s")
    table.add_column("item")
    table.add_column("value", overflow="fold")
    if "evaluation" in out:
        ev = read_json(out["evaluation"])
        for k in ("roc_auc", "pr_auc", "f1", "log_loss", "brier", "ece", "rmse", "mae", "mape", "r2", "f1_macro", "accuracy"):
            if k in ev["test"]:
                table.add_row(f"test {k}", f"{ev['test'][k]:.4f}")
        if ev.get("threshold") is not None:
            table.add_row("threshold (validation)", f"{ev['threshold']:.4f}")
    if "gate_decision" in out:
        dec = read_json(out["gate_decision"])
        table.add_row("blessed", f"{'yes' if dec['blessed'] else 'no'} — {dec['reason']}")
    for key in ("eda_report", "evaluation_report", "packaged_model", "deploy_manifest"):
        if key in out:
            table.add_row(key.replace("_", " "), str(out[key]))
    table.add_row("run directory", str(run_dir))
    Console().print(table)


@app.command()
@handles_errors
def run(
    config: Annotated[Path, typer.Argument(help="use-case YAML, e.g. configs/churn.yaml")],
    pipeline_root: Annotated[Path | None, typer.Option(help="where kfp.local writes artifacts [default: runs/local or runs/containers]")] = None,
    runner: Annotated[str, typer.Option(help="subprocess: tasks in this venv; docker: every task in the project image (podman/docker)")] = "subprocess",
) -> None:
    """Run the whole pipeline locally with kfp.local: every stage a KFP component in its own process
    (or its own container with --runner docker)."""
    if runner not in ("subprocess", "docker"):
        _fail(f"--runner must be subprocess or docker, not {runner!r}")
    if runner == "docker":
        from mlpipeline.config import load_config
        from mlpipeline.kfp_docker import run_in_containers

        t0 = time.perf_counter()
        run_dir = run_in_containers(config, pipeline_root or Path("runs/containers"))
        _summary(load_config(config), run_dir, time.perf_counter() - t0)
        return
    cfg = _local_config(config)
    import logging
    import warnings

    import kfp.local
    from rich.console import Console

    from mlpipeline.pipelines.local import run_pipeline
    from mlpipeline.pipelines.tabular import build_pipeline

    # kfp.local warns once per task that resource requests only apply on a cluster; say it once.
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")
    # SubprocessRunner runs the project image's code from this venv (which has the same package).
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
    console = Console()
    root = (pipeline_root or Path("runs/local")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    logging.getLogger("kfp").setLevel(logging.INFO)
    kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    pipeline = build_pipeline(cfg)
    console.rule(f"[bold]{cfg.name}[/]: running {pipeline.name} locally (pipeline_root {root})")
    console.print("[dim]resource requests, GPU and volume settings apply on a cluster only[/]")
    args = {**cfg.sections(), "name": cfg.name, "description": cfg.description}
    run_dir, seconds = run_pipeline(pipeline, args, root)
    _summary(cfg, run_dir, seconds)


@app.command()
@handles_errors
def finetune(
    config: Annotated[Path, typer.Argument(help="fine-tuning YAML, e.g. configs/llm/shakespeare-lora-tiny.yaml")],
    pipeline_root: Annotated[Path, typer.Option(help="where kfp.local writes artifacts")] = Path("runs/finetune"),
) -> None:
    """LoRA next-token fine-tuning of SmolLM2 as a local KFP pipeline; reports held-out perplexity."""
    from mlpipeline.finetune.local import run_finetune

    result = run_finetune(str(config), str(pipeline_root.resolve()))
    typer.echo(json.dumps({k: result[k] for k in ("perplexity_before", "perplexity_after", "improved", "packaged_model", "seconds")}, indent=2, default=str))


@app.command("compile")
@handles_errors
def compile_cmd(
    config: Annotated[Path | None, typer.Argument(help="one config; omit with --all")] = None,
    all_configs: Annotated[bool, typer.Option("--all", help="compile every configs/*.yaml")] = False,
    out_dir: Annotated[Path, typer.Option(help="output directory")] = Path("pipelines/compiled"),
) -> None:
    """Compile pipeline(s) to KFP IR YAML (byte-identical when compiled twice)."""
    from mlpipeline.config import load_config
    from mlpipeline.pipelines.compile import compile_config

    if all_configs == (config is not None):
        _fail("give a CONFIG or --all (not both)")
    paths = sorted(Path("configs").glob("*.yaml")) if all_configs else [config]
    for p in paths:
        out = compile_config(load_config(p), out_dir / f"{Path(p).stem}.yaml")
        typer.echo(str(out))
    if all_configs:  # the LoRA fine-tuning pipelines (configs/llm/ -> pipelines/compiled/llm/)
        from mlpipeline.pipelines.finetune import compile_all

        for out in compile_all():
            typer.echo(str(out))


@app.command()
@handles_errors
def submit(
    config: Annotated[Path, typer.Argument(help="use-case YAML")],
    host: Annotated[str, typer.Option(help="KFP API endpoint, e.g. http://ml-pipeline-ui.kubeflow:80")],
    experiment: Annotated[str, typer.Option(help="experiment name")] = "mlpipeline",
    recurring: Annotated[str | None, typer.Option(help="cron expression (6 fields, KFP style) for a recurring run")] = None,
    namespace: Annotated[str | None, typer.Option(help="Kubeflow profile namespace (multi-user)")] = None,
) -> None:
    """Submit a run (or a recurring run) to a Kubeflow Pipelines backend with kfp.Client."""
    from mlpipeline.config import load_config
    from mlpipeline.pipelines.submit import submit_pipeline

    result = submit_pipeline(load_config(config), host=host, experiment=experiment, cron=recurring, namespace=namespace)
    typer.echo(json.dumps(result, indent=2))


@app.command()
@handles_errors
def predict(
    model_dir: Annotated[Path, typer.Argument(help="packaged model directory")],
    data: Annotated[str, typer.Argument(help="CSV or Parquet file with the model's input columns")],
    output: Annotated[Path | None, typer.Option(help="write predictions here (.csv or .parquet)")] = None,
    metrics_out: Annotated[Path | None, typer.Option(help="write metrics JSON here (needs the target column)")] = None,
) -> None:
    """Score a file with a packaged model; prints metrics when the file has the target column."""
    from mlpipeline.artifacts import atomic_path, atomic_write_json
    from mlpipeline.packaging import PackagedModel, predict_from_estimator
    from mlpipeline.scoring import score_predictions
    from mlpipeline.signature import conform
    from mlpipeline.stages.ingest import read_source

    model = PackagedModel.load(model_dir)
    df = read_source(data)
    preds = model.predict_frame(df, allow_extra=True)
    if output is not None:
        with atomic_path(output) as tmp:
            if output.suffix == ".parquet":
                preds.to_parquet(tmp, index=False)
            else:
                preds.to_csv(tmp, index=False)
        typer.echo(f"wrote {len(preds)} predictions to {output}", err=True)
    target = model.signature.target
    if target in df.columns:
        sig = model.signature
        scored = predict_from_estimator(model.estimator, conform(df, sig, allow_extra=True), sig)
        metrics = score_predictions(df[target].to_numpy(), scored, sig)
        if metrics_out is not None:
            atomic_write_json(metrics_out, metrics)
        typer.echo(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, indent=2))
    elif output is None:
        preds.to_csv(sys.stdout, index=False)


@app.command()
@handles_errors
def serve(
    model_dir: Annotated[Path, typer.Argument(help="packaged model directory")],
    port: Annotated[int, typer.Option(help="HTTP port (REST v1/v2 and /metrics)")] = 8080,
    host: Annotated[str, typer.Option(help="bind address; 0.0.0.0 in a container")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
    name: Annotated[str | None, typer.Option(help="model name in URLs; default: from the model card")] = None,
    grpc: Annotated[bool, typer.Option(help="also serve gRPC on 8081")] = False,
) -> None:
    """Serve a packaged model with KServe (the container's entry point)."""
    from mlpipeline.serving.server import serve as run_server

    run_server(str(model_dir), port=port, host=host, workers=workers, model_name=name, enable_grpc=grpc)


@app.command("serve-llm")
@handles_errors
def serve_llm(
    model: Annotated[str | None, typer.Argument(help="smollm2 (default: the packaged SmolLM2-135M-Instruct), a .gguf, or an HF model dir")] = None,
    port: Annotated[int, typer.Option(help="HTTP port (/openai/v1/*, /v2/health/*, /metrics)")] = 8080,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    served_model_name: Annotated[str | None, typer.Option(help="model id clients send")] = None,
    max_running: Annotated[int, typer.Option(help="sequences decoded together (continuous batching)")] = 32,
    max_waiting: Annotated[int, typer.Option(help="queued requests before 429")] = 128,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
) -> None:
    """Serve a generative model with OpenAI-compatible streaming routes on KServe's ModelServer."""
    from mlpipeline.llm.server import DEFAULT_SERVED_MODEL_NAME
    from mlpipeline.llm.server import serve_llm as run_llm

    run_llm(
        model, served_model_name=served_model_name or DEFAULT_SERVED_MODEL_NAME, http_port=port, host=host,
        max_running=max_running, max_waiting=max_waiting, device=device,
    )


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
