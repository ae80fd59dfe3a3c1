from __future__ import annotations

from typer.testing import CliRunner

from mlpipeline.cli import app

runner = CliRunner()


def test_help_lists_commands_and_is_cheap():
    import subprocess
    import sys

    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("run", "compile", "submit", "predict", "serve"):
        assert cmd in res.output
    code = "import sys; from mlpipeline.cli import app; print(any(m in sys.modules for m in ('kfp','sklearn','torch','kserve','pandas')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_submit_to_unreachable_host_is_a_clear_error(repo_root):
    res = runner.invoke(app, ["submit", str(repo_root / "configs" / "churn.yaml"), "--host", "http://127.0.0.1:9", "--recurring", "0 0 3 * * *"])
    assert res.exit_code == 2
    assert "error: cannot reach Kubeflow Pipelines at http://127.0.0.1:9" in res.output
    assert "Traceback" not in res.output


def test_bad_config_is_reported_with_the_field(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata: {source: churn, target: churn}\nregistry: {model_name: x}\ntune: {n_trials: 0}\n")
    for cmd in (["run", str(p)], ["compile", str(p)], ["submit", str(p), "--host", "http://127.0.0.1:9"]):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 2 and "tune.n_trials" in res.output, (cmd, res.output)


def test_compile_needs_config_or_all():
    res = runner.invoke(app, ["compile"])
    assert res.exit_code == 2 and "give a CONFIG or --all" in res.output
