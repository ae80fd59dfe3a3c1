"""Validate stage: a pandera schema declared in the use case's config + a data-quality report.

Hard rules (declared column rules with severity "hard", dtype, minimum rows, missing fraction per
column, a target with at least two classes) raise SchemaValidationError naming the column, the
rule and example row indices. Soft findings (duplicates, constant columns, class imbalance,
soft-rule violations) only go into the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpipeline.artifacts import atomic_write_json, read_parquet
from mlpipeline.config import ColumnRule, DataConfig, ValidationConfig, parse_section
from mlpipeline.errors import SchemaValidationError
from mlpipeline.signature import dtype_of

_COMPATIBLE = {  # declared dtype -> observed dtypes accepted
    "int": {"int", "bool"},
    "float": {"int", "float"},
    "str": {"str"},
    "bool": {"bool", "int"},
    "datetime": {"datetime"},
}
_EXAMPLES = 5


def _pandera_schema(rules: dict[str, ColumnRule]) -> Any:
    import pandera.pandas as pa

    columns = {}
    for name, r in rules.items():
        checks = []
        if r.min is not None:
            checks.append(pa.Check.ge(r.min))
        if r.max is not None:
            checks.append(pa.Check.le(r.max))
        if r.allowed is not None:
            checks.append(pa.Check.isin(list(r.allowed)))
        columns[name] = pa.Column(checks=checks, nullable=r.nullable, unique=r.unique, required=False)
    return pa.DataFrameSchema(columns, strict=False)


def _rule_failures(df: Any, rules: dict[str, ColumnRule]) -> list[dict[str, Any]]:
    """Run the pandera schema lazily; one record per (column, check) with example row indices."""
    import pandera.errors as pe

    if not rules:
        return []
    try:
        _pandera_schema(rules).validate(df, lazy=True)
        return []
    except pe.SchemaErrors as err:
        fc = err.failure_cases
    out = []
    for (column, check), grp in fc.groupby(["column", "check"], dropna=False, sort=True):
        rows = [int(i) for i in grp["index"].dropna().tolist()[:_EXAMPLES]]
        values = [v for v in grp["failure_case"].tolist()[:_EXAMPLES]]
        out.append(
            {
                "column": str(column),
                "check": str(check),
                "failures": int(len(grp)),
                "example_rows": rows,
                "example_values": [None if v != v else v for v in values],  # NaN -> None
                "severity": rules[str(column)].severity if str(column) in rules else "hard",
            }
        )
    return out


def quality_report(df: Any, data_cfg: DataConfig, cfg: ValidationConfig) -> dict[str, Any]:
    """Everything measured about the table; no judgement, just facts."""
    n = len(df)
    missing = {c: int(df[c].isna().sum()) for c in df.columns}
    constant = [c for c in df.columns if df[c].nunique(dropna=True) <= 1]
    dup = int(df.duplicated().sum())
    report: dict[str, Any] = {
        "rows": n,
        "columns": len(df.columns),
        "missing": {c: {"count": m, "fraction": round(m / n, 6) if n else 0.0} for c, m in missing.items()},
        "duplicates": {"count": dup, "fraction": round(dup / n, 6) if n else 0.0},
        "constant_columns": constant,
        "dtypes": {c: dtype_of(df[c]) for c in df.columns},
        "out_of_range": {},
    }
    for name, r in cfg.columns.items():
        if name in df.columns and (r.min is not None or r.max is not None):
            s = df[name]
            if dtype_of(s) in ("int", "float", "bool"):
                low = int((s < r.min).sum()) if r.min is not None else 0
                high = int((s > r.max).sum()) if r.max is not None else 0
                report["out_of_range"][name] = {"below_min": low, "above_max": high}
    if data_cfg.task == "classification" and data_cfg.target in df.columns:
        counts = df[data_cfg.target].value_counts(dropna=False)
        report["class_balance"] = {str(k): {"count": int(v), "fraction": round(v / n, 6)} for k, v in counts.items()}
    return report


def validate(
    data_path: str | Path,
    data_cfg: dict[str, Any] | DataConfig,
    validation_cfg: dict[str, Any] | ValidationConfig,
    out_report: str | Path,
) -> dict[str, Any]:
    """Validate the ingested table; write the report (also on failure), raise on hard failures."""
    dcfg = parse_section(DataConfig, data_cfg, "data")
    vcfg = parse_section(ValidationConfig, validation_cfg, "validation")
    df = read_parquet(data_path)
    report = quality_report(df, dcfg, vcfg)
    hard: list[str] = []
    soft: list[str] = []

    if len(df) < vcfg.min_rows:
        hard.append(f"only {len(df)} rows; validation.min_rows is {vcfg.min_rows}")
    if vcfg.require_declared_columns:
        absent = [c for c in vcfg.columns if c not in df.columns]
        if absent:
            hard.append(f"declared column(s) missing from the data: {', '.join(absent)}")
    for name, rule in vcfg.columns.items():
        if name in df.columns and rule.dtype is not None:
            seen = dtype_of(df[name])
            if seen not in _COMPATIBLE[rule.dtype]:
                bad = df[name].dropna()
                examples = bad.index[:_EXAMPLES].tolist()
                msg = f"column {name!r}: expected {rule.dtype}, found {seen} (e.g. rows {examples}: {bad.head(3).tolist()})"
                (hard if rule.severity == "hard" else soft).append(msg)
    for name, m in report["missing"].items():
        if m["fraction"] > vcfg.max_missing_fraction:
            msg = f"column {name!r}: {m['fraction']:.1%} missing > validation.max_missing_fraction {vcfg.max_missing_fraction:.0%}"
            hard.append(msg)
    failures = _rule_failures(df, {k: v for k, v in vcfg.columns.items() if k in df.columns})
    for f in failures:
        msg = (
            f"column {f['column']!r} failed {f['check']} in {f['failures']} row(s), "
            f"e.g. rows {f['example_rows']} with values {f['example_values']}"
        )
        (hard if f["severity"] == "hard" else soft).append(msg)
    target = df[dcfg.target] if dcfg.target in df.columns else None
    if target is not None:
        if target.isna().any():
            rows = target.index[target.isna()][:_EXAMPLES].tolist()
            hard.append(f"target {dcfg.target!r} has {int(target.isna().sum())} missing value(s), e.g. rows {rows}")
        if dcfg.task == "classification":
            classes = target.dropna().unique()
            if len(classes) < 2:
                hard.append(f"target {dcfg.target!r} has a single class ({classes.tolist()}); need at least two")
            elif dcfg.positive_class is not None and dcfg.positive_class not in set(classes.tolist()):
                hard.append(f"data.positive_class {dcfg.positive_class!r} not among target values {sorted(map(str, classes))}")
            else:
                minority = target.value_counts(normalize=True).min()
                if minority < vcfg.min_minority_fraction:
                    soft.append(f"target {dcfg.target!r}: minority class is {minority:.2%} of rows")
        else:
            from pandas.api.types import is_numeric_dtype

            if not is_numeric_dtype(target):
                hard.append(f"target {dcfg.target!r} must be numeric for regression, found {target.dtype}")
    if report["duplicates"]["fraction"] > vcfg.max_duplicate_fraction:
        soft.append(f"{report['duplicates']['count']} duplicated rows ({report['duplicates']['fraction']:.1%})")
    soft += [f"column {c!r} is constant" for c in report["constant_columns"]]

    report["rule_failures"] = failures
    report["hard_failures"] = hard
    report["warnings"] = soft
    report["passed"] = not hard
    atomic_write_json(out_report, report)
    if hard:
        raise SchemaValidationError("data validation failed:\n  - " + "\n  - ".join(hard))
    return report
