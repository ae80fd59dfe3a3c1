"""Gate stage: bless a candidate only if it meets the configured bounds and does not regress
against the current production model (read from the registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpipeline.artifacts import atomic_write_json, read_json
from mlpipeline.config import GateConfig, RegistryConfig, parse_section
from mlpipeline.errors import ConfigError
from mlpipeline.registry import ModelRegistry
from mlpipeline.scoring import HIGHER_IS_BETTER


def decide(test: dict[str, Any], primary: str, cfg: GateConfig, production: dict[str, Any] | None) -> dict[str, Any]:
    """Pure decision: returns {blessed, reason, checks}; every check names metric, value and bound."""
    checks = []
    for name, bound in sorted(cfg.min_metrics.items()):
        if name not in test:
            raise ConfigError(f"gate.min_metrics: metric {name!r} is not computed; available: {', '.join(sorted(k for k, v in test.items() if isinstance(v, float)))}")
        checks.append({"check": f"{name} >= {bound}", "value": test[name], "passed": bool(test[name] >= bound)})
    for name, bound in sorted(cfg.max_metrics.items()):
        if name not in test:
            raise ConfigError(f"gate.max_metrics: metric {name!r} is not computed")
        checks.append({"check": f"{name} <= {bound}", "value": test[name], "passed": bool(test[name] <= bound)})
    if cfg.compare_to_production and production is not None:
        prod_value = (production.get("metrics") or {}).get(primary)
        if prod_value is not None:
            cand = test[primary]
            if HIGHER_IS_BETTER[primary]:
                ok = cand >= prod_value - cfg.max_regression
                desc = f"{primary} >= production {prod_value:.4f} - {cfg.max_regression}"
            else:
                ok = cand <= prod_value + cfg.max_regression
                desc = f"{primary} <= production {prod_value:.4f} + {cfg.max_regression}"
            checks.append({"check": desc, "value": cand, "passed": bool(ok), "production_version": production["version"]})
    failed = [c for c in checks if not c["passed"]]
    if failed:
        reason = "rejected: " + "; ".join(f"{c['check']} (got {c['value']:.4f})" for c in failed)
    elif production is None:
        reason = "blessed: all bounds met; no production model yet"
    else:
        reason = f"blessed: all bounds met and no regression vs production {production['version']}"
    return {"blessed": not failed, "reason": reason, "checks": checks, "production": production and production["version"]}


def gate(
    metrics_path: str | Path,
    gate_cfg: dict[str, Any] | GateConfig,
    registry_cfg: dict[str, Any] | RegistryConfig,
    out_decision: str | Path,
) -> dict[str, Any]:
    gcfg = parse_section(GateConfig, gate_cfg, "gate")
    rcfg = parse_section(RegistryConfig, registry_cfg, "registry")
    metrics = read_json(metrics_path)
    production = ModelRegistry(rcfg.path, rcfg.model_name).production() if gcfg.compare_to_production else None
    decision = decide(metrics["test"], metrics["primary_metric"], gcfg, production)
    atomic_write_json(out_decision, decision)
    return decision
