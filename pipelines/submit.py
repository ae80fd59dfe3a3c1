"""Submit a compiled pipeline to a Kubeflow Pipelines backend with the official ``kfp.Client``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mlpipeline.config import PipelineConfig
from mlpipeline.errors import SubmitError


def _client(host: str, namespace: str | None) -> Any:
    import kfp

    try:
        client = kfp.Client(host=host, namespace=namespace)
        client.get_kfp_healthz()  # fail fast, with a clear message, when the host is not a KFP API
    except Exception as e:  # kfp raises urllib3/requests/ApiException/TimeoutError variants
        raise SubmitError(f"cannot reach Kubeflow Pipelines at {host}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    return client


def submit_pipeline(
    cfg: PipelineConfig, *, host: str, experiment: str = "mlpipeline", cron: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    from mlpipeline.pipelines.compile import compile_config

    client = _client(host, namespace)
    with tempfile.TemporaryDirectory() as d:
        package = compile_config(cfg, Path(d) / f"{cfg.name}.yaml")
        try:
            exp = client.create_experiment(name=experiment, namespace=namespace)
            if cron:
                job = client.create_recurring_run(
                    experiment_id=exp.experiment_id,
                    job_name=f"{cfg.name}-recurring",
                    cron_expression=cron,
                    pipeline_package_path=str(package),
                    enable_caching=True,
                )
                return {"recurring_run_id": job.recurring_run_id, "experiment_id": exp.experiment_id, "cron": cron}
            run = client.create_run_from_pipeline_package(
                str(package), arguments={}, run_name=f"{cfg.name}", experiment_name=experiment, namespace=namespace
            )
            return {"run_id": run.run_id, "experiment": experiment, "url": f"{host.rstrip('/')}/#/runs/details/{run.run_id}"}
        except SubmitError:
            raise
        except Exception as e:
            raise SubmitError(f"submitting {cfg.name} to {host} failed: {type(e).__name__}: {e}") from e
