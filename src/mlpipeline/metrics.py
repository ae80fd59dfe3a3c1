"""All Prometheus metrics of the project, in one module.

Names: ``mlpipeline_<subsystem>_<name>_<unit>``; counters are declared without ``_total`` and
prometheus_client's exposition adds it. Metrics are created once at import, on the default registry
(KServe's ``/metrics`` serves that registry), with label children pre-bound where labels are fixed.
Subsystems: ``inference`` (tabular predictor), ``llm`` (generative server), ``model`` (info),
``drift`` (monitoring).
"""

from __future__ import annotations

NAMESPACE = "mlpipeline"


def build_1_2_5_buckets(max_value: float, min_value: float = 1.0) -> list[float]:
    """1-2-5 series from ``min_value`` up to ``max_value`` inclusive (vLLM's token-count buckets).

    >>> build_1_2_5_buckets(100)
    [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
    """
    out: list[float] = []
    exponent = 0
    while True:
        for m in (1, 2, 5):
            v = m * min_value * 10**exponent
            if v > max_value:
                return out
            out.append(float(v))
        exponent += 1
