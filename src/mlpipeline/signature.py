"""Model input/output signature: inferred from training data, enforced on every scoring path.

The same :func:`conform` runs in ``mlpipeline predict``, in the KServe predictor and in the
evaluate stage, so a row is typed identically at training, evaluation and serving time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from mlpipeline.errors import InvalidInputError

#: Signature dtypes and the pandas dtype each is coerced to.
DTYPES = ("int", "float", "bool", "str", "datetime")


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    dtype: str  # one of DTYPES
    nullable: bool = True
    categories: tuple[str, ...] | None = None  # seen at training (informational; unseen ones are allowed)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.categories is None:
            d.pop("categories")
        else:
            d["categories"] = list(self.categories)
        return d


@dataclass(frozen=True)
class Signature:
    inputs: tuple[ColumnSpec, ...]
    task: str
    target: str
    classes: tuple[Any, ...] = ()
    positive_class: Any = None
    threshold: float | None = None
    outputs: tuple[dict[str, str], ...] = field(default_factory=tuple)

    @property
    def input_names(self) -> list[str]:
        return [c.name for c in self.inputs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [c.to_dict() for c in self.inputs],
            "outputs": [dict(o) for o in self.outputs],
            "task": self.task,
            "target": self.target,
            "classes": list(self.classes),
            "positive_class": self.positive_class,
            "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signature:
        try:
            inputs = tuple(
                ColumnSpec(
                    name=c["name"],
                    dtype=c["dtype"],
                    nullable=bool(c.get("nullable", True)),
                    categories=tuple(c["categories"]) if c.get("categories") is not None else None,
                )
                for c in d["inputs"]
            )
            return cls(
                inputs=inputs,
                task=d["task"],
                target=d["target"],
                classes=tuple(d.get("classes") or ()),
                positive_class=d.get("positive_class"),
                threshold=d.get("threshold"),
                outputs=tuple(d.get("outputs") or ()),
            )
        except (KeyError, TypeError) as e:
            from mlpipeline.errors import ArtifactError

            raise ArtifactError(f"malformed signature: {e!r}") from e


def dtype_of(series: Any) -> str:
    import pandas as pd

    t = series.dtype
    if pd.api.types.is_bool_dtype(t):
        return "bool"
    if pd.api.types.is_integer_dtype(t):
        return "int"
    if pd.api.types.is_float_dtype(t):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(t):
        return "datetime"
    return "str"


def infer_inputs(df: Any, max_categories: int = 200) -> tuple[ColumnSpec, ...]:
    specs = []
    for name in df.columns:
        s = df[name]
        dt = dtype_of(s)
        cats = None
        if dt == "str":
            uniq = s.dropna().astype(str).unique()
            if len(uniq) <= max_categories:
                cats = tuple(sorted(uniq))
        # Columns with no NaN at training may still be nullable: the preprocessing imputes every column.
        specs.append(ColumnSpec(name=str(name), dtype=dt, nullable=True, categories=cats))
    return tuple(specs)


def _coerce(name: str, values: Any, dtype: str) -> Any:
    """Convert one column to its signature dtype; vectorised fast paths for already-typed columns."""
    import numpy as np
    import pandas as pd

    s = values if isinstance(values, pd.Series) else pd.Series(values)
    kind = s.dtype.kind  # i/u int, f float, b bool, O object, M datetime
    try:
        if dtype == "float":
            if kind in "iuf":
                return s.astype("float64")
            if kind == "b" or (kind == "O" and s.map(lambda v: isinstance(v, (bool, np.bool_))).any()):
                raise ValueError("booleans are not numbers")
            return pd.to_numeric(s, errors="raise").astype("float64")
        if dtype == "int":
            if kind in "iu":
                return s.astype("int64")
            if kind == "b" or (kind == "O" and s.map(lambda v: isinstance(v, (bool, np.bool_))).any()):
                raise ValueError("booleans are not numbers")
            num = s.astype("float64") if kind == "f" else pd.to_numeric(s, errors="raise").astype("float64")
            present = num.dropna().to_numpy()
            if not np.all(np.isfinite(present)) or not np.all(present == np.round(present)):
                raise ValueError("expected whole numbers")
            # keep NaN-able ints as float64; the model's transform treats them as numbers either way
            return num if num.isna().any() else num.astype("int64")
        if dtype == "bool":
            if kind == "b":
                return s
            mapping = {True: True, False: False, "true": True, "false": False, "True": True, "False": False}  # 1/0 == True/False
            present = s.dropna()
            bad = present[~present.isin(list(mapping))]
            if len(bad):
                raise ValueError(f"not a boolean: {bad.iloc[0]!r}")
            return s.map(lambda v: mapping.get(v, v) if v is not None and v == v else None)
        if dtype == "datetime":
            return s if kind == "M" else pd.to_datetime(s, errors="raise")
        # str
        if kind == "O" and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
            return s.where(s.notna(), None)
        bad = s.dropna()[s.dropna().map(lambda v: isinstance(v, (dict, list)))]
        if len(bad):
            raise ValueError(f"expected a string, got {type(bad.iloc[0]).__name__}")
        return s.map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)).astype(object)
    except (ValueError, TypeError, OverflowError) as e:
        raise InvalidInputError(f"column {name!r}: cannot read values as {dtype} ({e})") from e


_KINDS_OK = {"float": "iuf", "int": "iu", "bool": "b", "datetime": "M"}
#: for object columns (JSON decoding keeps values as they came): pandas' inferred kind that converts exactly
_INFERRED_OK = {"float": ("integer", "floating", "mixed-integer-float"), "int": ("integer",), "bool": ("boolean",), "datetime": ()}


def _conform_typed(df: Any, signature: Signature) -> Any | None:
    """Whole-frame fast path when every column's values already have a compatible type (the usual
    case for JSON and Parquet input): a handful of vectorised calls instead of a pandas pass per
    column. Returns None when any column needs per-value coercion (then :func:`_coerce` does it)."""
    import numpy as np
    import pandas as pd

    casts: dict[str, str] = {}
    for spec in signature.inputs:
        col = df[spec.name]
        k = col.dtype.kind
        if spec.dtype == "str":
            if k != "O" or pd.api.types.infer_dtype(col, skipna=True) not in ("string", "empty"):
                return None
        elif k == "O":
            if pd.api.types.infer_dtype(col, skipna=True) not in _INFERRED_OK[spec.dtype]:
                return None
            if spec.dtype in ("int", "bool") and col.isna().any():
                return None  # NaN-able ints/bools keep the per-value path (its rules for nulls)
            casts[spec.name] = {"float": "float64", "int": "int64", "bool": "bool"}[spec.dtype]
        elif k not in _KINDS_OK[spec.dtype]:
            return None
        elif spec.dtype == "float" and k != "f":
            casts[spec.name] = "float64"
        elif spec.dtype == "int" and str(col.dtype) != "int64":
            casts[spec.name] = "int64"
    out = df[signature.input_names].reset_index(drop=True)
    if casts:
        out = out.astype(casts)
    floats = [s.name for s in signature.inputs if s.dtype == "float"]
    if floats:
        inf = np.isinf(out[floats].to_numpy(dtype="float64")).any(axis=0)
        if inf.any():
            raise InvalidInputError(f"column {floats[int(np.argmax(inf))]!r}: infinite values are not allowed")
    na = out.isna().any()
    for spec in signature.inputs:
        if na[spec.name]:
            if not spec.nullable:
                raise InvalidInputError(f"column {spec.name!r}: null/NaN values are not allowed")
            if spec.dtype == "str":
                out[spec.name] = out[spec.name].where(out[spec.name].notna(), None)
    return out


def conform(df: Any, signature: Signature, *, allow_extra: bool = False) -> Any:
    """Return ``df`` restricted to the signature's columns, in order, with training dtypes.

    Raises InvalidInputError naming the column for: missing columns, unexpected columns (unless
    ``allow_extra``), values that do not convert, infinities, and nulls in non-nullable columns.
    """
    import numpy as np
    import pandas as pd

    if len(df) == 0:
        raise InvalidInputError("empty batch: no rows to score")
    expected = signature.input_names
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise InvalidInputError(f"missing column(s): {', '.join(missing)}")
    extra = [str(c) for c in df.columns if c not in expected and c != signature.target]
    if extra and not allow_extra:
        raise InvalidInputError(f"unexpected column(s): {', '.join(extra)}")
    fast = _conform_typed(df, signature)
    if fast is not None:
        return fast
    out = {}
    for spec in signature.inputs:
        col = _coerce(spec.name, df[spec.name].reset_index(drop=True), spec.dtype)
        if spec.dtype == "float" or (spec.dtype == "int" and col.dtype.kind == "f"):
            if np.isinf(col.to_numpy()).any():
                raise InvalidInputError(f"column {spec.name!r}: infinite values are not allowed")
        if not spec.nullable and col.isna().any():
            raise InvalidInputError(f"column {spec.name!r}: null/NaN values are not allowed")
        out[spec.name] = col
    return pd.DataFrame(out)
