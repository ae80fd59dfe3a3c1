"""Schema helpers for manifest tests (shared by the tabular and LLM manifest tests).

- :func:`kustomize` renders a kustomization with the real ``kubectl kustomize`` (offline).
- :func:`validate_custom_resource` checks a custom resource against the ``openAPIV3Schema`` of the
  served + storage version of its real CRD in ``../shared/schemas/crds`` (repo root's sibling),
  strictly: unknown fields are errors (as ``kubectl apply --validate=strict``), except under
  ``x-kubernetes-preserve-unknown-fields``.
- :func:`validate_core` checks built-in kinds with ``kubernetes-validate`` (strict schemas).
- :func:`validate_dashboard` checks a Grafana dashboard against ``../shared/schemas/grafana``:
  the dashboard schema, then each panel's ``options``/``fieldConfig.defaults.custom`` against its
  panel plugin's schema (``<type>.jsonschema.json#/definitions/Options|FieldConfig``) and each
  Prometheus target against ``prometheus.jsonschema.json``.
- :func:`validate_object` dispatches on apiVersion.

Every ``validate_*`` raises ``AssertionError`` listing all problems with their JSON paths.
"""

from __future__ import annotations

import copy
import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_SCHEMAS = REPO_ROOT.parent / "shared" / "schemas"
CRD_DIR = SHARED_SCHEMAS / "crds"
GRAFANA_DIR = SHARED_SCHEMAS / "grafana"
#: Kubernetes version whose built-in schemas validate core objects.
KUBERNETES_VERSION = "1.30.0"


def have(binary: str) -> bool:
    return shutil.which(binary) is not None


def kustomize(path: str | Path) -> list[dict[str, Any]]:
    """``kubectl kustomize <path>`` → list of objects (raises with kubectl's stderr on failure)."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    if out.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _where(err: Any) -> str:
    return "/".join(str(p) for p in err.absolute_path) or "<root>"


# --------------------------------------------------------------------------- CRDs
def _strict(schema: Any) -> Any:
    """Copy of an OpenAPI v3 structural schema where objects with ``properties`` reject unknown keys."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """``(apiVersion, kind)`` → strict openAPIV3Schema, for every served version of every CRD."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for f in sorted(CRD_DIR.glob("*.yaml")):
        for crd in yaml.safe_load_all(f.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                if v.get("served"):
                    schema = v["schema"]["openAPIV3Schema"]
                    schemas[(f"{group}/{v['name']}", kind)] = _strict(schema)
    return schemas


def crd_groups() -> set[str]:
    return {api.split("/")[0] for api, _ in crd_schemas()}


def _check_metadata(meta: Any) -> list[str]:
    errs = []
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        return ["metadata.name: required string"]
    for key in ("labels", "annotations"):
        for k, v in (meta.get(key) or {}).items():
            if not isinstance(v, str):
                errs.append(f"metadata.{key}.{k}: must be a string, got {type(v).__name__}")
    return errs


def validate_custom_resource(obj: dict[str, Any]) -> None:
    import jsonschema

    key = (obj.get("apiVersion"), obj.get("kind"))
    schema = crd_schemas().get(key)  # type: ignore[arg-type]
    if schema is None:
        raise AssertionError(f"no CRD schema for {key}; known: {sorted(crd_schemas())}")
    validator = jsonschema.Draft4Validator(schema)
    errs = [f"{_where(e)}: {e.message}" for e in validator.iter_errors(obj)]
    errs += _check_metadata(obj.get("metadata"))
    if errs:
        name = (obj.get("metadata") or {}).get("name")
        raise AssertionError(f"{key[1]} {name!r} does not validate against its CRD:\n  " + "\n  ".join(errs))


# --------------------------------------------------------------------------- core objects
def validate_core(obj: dict[str, Any], version: str = KUBERNETES_VERSION) -> None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(copy.deepcopy(obj), version, strict=True)
    except kubernetes_validate.ValidationError as e:
        name = (obj.get("metadata") or {}).get("name")
        raise AssertionError(f"{obj.get('kind')} {name!r}: {'/'.join(map(str, e.path))}: {e.message}") from e


def validate_object(obj: dict[str, Any]) -> None:
    """A custom resource against its CRD when we have one, else a built-in kind."""
    group = str(obj.get("apiVersion", "")).split("/")[0] if "/" in str(obj.get("apiVersion", "")) else ""
    if group in crd_groups():
        validate_custom_resource(obj)
    else:
        validate_core(obj)


# --------------------------------------------------------------------------- Grafana
@functools.cache
def _grafana_registry() -> Any:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    resources = []
    for f in sorted(GRAFANA_DIR.glob("*.jsonschema.json")):
        contents = json.loads(f.read_text())
        resources.append((f"urn:grafana:{f.name}", Resource.from_contents(contents, default_specification=DRAFT7)))
    return Registry().with_resources(resources)


def _grafana_validator(file: str, pointer: str = "") -> Any:
    import jsonschema

    ref = f"urn:grafana:{file}#{pointer}"
    return jsonschema.Draft7Validator({"$ref": ref}, registry=_grafana_registry())


def grafana_panel_types() -> set[str]:
    skip = {"dashboard", "common", "prometheus"}
    return {f.name.split(".")[0] for f in GRAFANA_DIR.glob("*.jsonschema.json")} - skip


def _panels(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for i, p in enumerate(dashboard.get("panels") or []):
        out.append((f"panels/{i}", p))
        for j, sub in enumerate(p.get("panels") or []):  # collapsed rows
            out.append((f"panels/{i}/panels/{j}", sub))
    return out


def validate_dashboard(dashboard: dict[str, Any]) -> None:
    errs = [f"{_where(e)}: {e.message}" for e in _grafana_validator("dashboard.jsonschema.json").iter_errors(dashboard)]
    known = grafana_panel_types()
    ids = [p.get("id") for _, p in _panels(dashboard) if p.get("type") != "row"]
    if len(ids) != len(set(ids)):
        errs.append("panel ids are not unique")
    for where, panel in _panels(dashboard):
        ptype = panel.get("type")
        if ptype == "row":
            continue
        if ptype not in known:
            errs.append(f"{where}: panel type {ptype!r} has no schema in {GRAFANA_DIR} ({sorted(known)})")
            continue
        file = f"{ptype}.jsonschema.json"
        if "options" in panel:
            v = _grafana_validator(file, "/definitions/Options")
            errs += [f"{where}/options/{_where(e)}: {e.message}" for e in v.iter_errors(panel["options"])]
        custom = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("custom")
        defs = json.loads((GRAFANA_DIR / file).read_text()).get("definitions", {})
        if custom is not None and "FieldConfig" in defs:
            v = _grafana_validator(file, "/definitions/FieldConfig")
            errs += [f"{where}/fieldConfig/defaults/custom/{_where(e)}: {e.message}" for e in v.iter_errors(custom)]
        for k, target in enumerate(panel.get("targets") or []):
            v = _grafana_validator("prometheus.jsonschema.json")
            errs += [f"{where}/targets/{k}/{_where(e)}: {e.message}" for e in v.iter_errors(target)]
    if errs:
        raise AssertionError(f"dashboard {dashboard.get('title')!r} is invalid:\n  " + "\n  ".join(errs))


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and query variables."""
    exprs = [t["expr"] for _, p in _panels(dashboard) for t in (p.get("targets") or []) if t.get("expr")]
    for var in (dashboard.get("templating") or {}).get("list", []):
        q = var.get("query")
        if var.get("type") == "query":
            exprs.append(q.get("query", "") if isinstance(q, dict) else str(q or ""))
    return exprs
