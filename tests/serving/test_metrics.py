"""Prometheus metrics of the predictor: counts match the traffic sent, the exposition passes
``promtool check metrics``, a real Prometheus scrapes it, and ``--workers 2`` sums over workers."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from serving_support import MODEL_NAME, ServerProcess, free_port, records, v2_column_tensors

V1 = f"/v1/models/{MODEL_NAME}:predict"
V2 = f"/v2/models/{MODEL_NAME}/infer"


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(snap, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lbls), v in snap.items() if n == name and want <= lbls)


def test_counts_follow_traffic(server, packaged, rows):
    before = samples(server.url)
    v1_rows, v2_rows = rows.head(17), rows.iloc[17:40]
    r1 = httpx.post(server.url + V1, json={"instances": records(v1_rows)})
    r2 = httpx.post(server.url + V2, json={"inputs": v2_column_tensors(v2_rows, packaged.signature)})
    bad = httpx.post(server.url + V1, json={"instances": []})
    assert (r1.status_code, r2.status_code, bad.status_code) == (200, 200, 400)
    after = samples(server.url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    m = {"model": MODEL_NAME}
    assert delta("mlpipeline_inference_requests_total", **m, protocol="v1", code="200") == 1
    assert delta("mlpipeline_inference_requests_total", **m, protocol="v2", code="200") == 1
    assert delta("mlpipeline_inference_requests_total", **m, protocol="v1", code="400") == 1
    assert delta("mlpipeline_inference_request_duration_seconds_count", **m) == 3
    assert delta("mlpipeline_inference_request_duration_seconds_bucket", **m, protocol="v1", le="+Inf") == 2
    assert delta("mlpipeline_inference_rows_total", **m) == len(v1_rows) + len(v2_rows)
    labels = [p["label"] for p in r1.json()["predictions"]]
    labels += {o["name"]: o for o in r2.json()["outputs"]}["prediction"]["data"]
    for cls, n in Counter(labels).items():
        assert delta("mlpipeline_inference_predictions_total", **m, **{"class": cls}) == n
    assert value(after, "mlpipeline_inference_in_flight", **m) == 0
    info = {lbls: v for (n, lbls), v in after.items() if n == "mlpipeline_model_info"}
    assert info == {frozenset({"model": MODEL_NAME, "version": packaged.version, "sha256": packaged.manifest_sha256}.items()): 1.0}
    # KServe's own stage histograms are still exported beside ours
    assert value(after, "request_predict_seconds_count", model_name=MODEL_NAME) > 0


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed (`make system-deps` installs it)")
def test_promtool_check_metrics_is_clean(server, rows):
    httpx.post(server.url + V1, json={"instances": records(rows.head(3))})
    text = httpx.get(server.url + "/metrics").text
    out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr


@pytest.mark.skipif(not shutil.which("prometheus"), reason="prometheus is not installed (`make system-deps` installs it)")
def test_real_prometheus_scrapes_the_server(server, rows, tmp_path: Path):
    for _ in range(3):
        assert httpx.post(server.url + V1, json={"instances": records(rows.head(2))}).status_code == 200
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(textwrap.dedent(f"""
        global:
          scrape_interval: 1s
          evaluation_interval: 1s
        scrape_configs:
          - job_name: predictor
            static_configs:
              - targets: ["127.0.0.1:{server.port}"]
                labels: {{namespace: "test"}}
    """))
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        expected = value(samples(server.url), "mlpipeline_inference_requests_total", model=MODEL_NAME, code="200")
        query = f'sum(mlpipeline_inference_requests_total{{namespace="test",model="{MODEL_NAME}",code="200"}})'
        got, deadline = None, time.monotonic() + 45
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=5)
                if r.status_code == 503:  # Prometheus still starting ("Service Unavailable", not JSON)
                    time.sleep(0.5)
                    continue
                res = r.json()
                if res["status"] == "success" and res["data"]["result"]:
                    got = float(res["data"]["result"][0]["value"][1])
                    if got >= expected:
                        break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert got == expected, (got, expected, (tmp_path / "prometheus.log").read_text()[-2000:])
        targets = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets").json()["data"]["activeTargets"]
        assert [t["health"] for t in targets] == ["up"]
        info = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": "mlpipeline_model_info"}).json()
        assert info["data"]["result"][0]["metric"]["model"] == MODEL_NAME
    finally:
        prom.terminate()
        prom.wait(timeout=20)
        log.close()


def test_two_workers_sum_their_counts(model_dir, rows, tmp_path: Path):
    mp_dir = tmp_path / "multiproc"
    mp_dir.mkdir()
    (mp_dir / "counter_99999.db").write_bytes(b"stale from a previous run")  # must be wiped at start
    n_requests = 40
    body = {"instances": records(rows.head(5))}
    with ServerProcess(model_dir, tmp_path / "server.log", "--workers", "2", env={"PROMETHEUS_MULTIPROC_DIR": str(mp_dir)}) as srv:
        srv.wait_ready(timeout=120)
        # each worker publishes model info when its app is built: wait until both are up
        deadline = time.monotonic() + 120
        while len(list(mp_dir.glob("gauge_livemax_*.db"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)

        def send(_: int) -> int:
            with httpx.Client() as c:  # new connection per request: spread over both workers
                return c.post(srv.url + V1, json=body, timeout=30).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(send, range(n_requests)))
        assert codes == [200] * n_requests
        snaps = [samples(srv.url) for _ in range(6)]  # scrapes land on either worker
        pids = {p.name.split("_")[-1].removesuffix(".db") for p in mp_dir.glob("counter_*.db")}
    assert "99999" not in pids
    assert len(pids) >= 2, f"only {pids} served requests; the sum test needs both workers busy"
    for snap in snaps:
        assert value(snap, "mlpipeline_inference_requests_total", model=MODEL_NAME, code="200") == n_requests
        assert value(snap, "mlpipeline_inference_rows_total", model=MODEL_NAME) == 5 * n_requests
        assert value(snap, "mlpipeline_inference_request_duration_seconds_count", model=MODEL_NAME) == n_requests
        assert value(snap, "mlpipeline_inference_in_flight", model=MODEL_NAME) == 0
        assert value(snap, "mlpipeline_model_info", model=MODEL_NAME) == 1
