"""Request/response codecs between the inference protocols and DataFrames of raw input rows.

Pure functions, no HTTP: v1 ``{"instances": [...]}`` (objects or rows in signature order) and v2
Open Inference Protocol tensors (one tensor per column, or one ``[n, n_columns]`` tensor) become a
DataFrame with the signature's columns, which :meth:`PackagedModel.predict_frame` then conforms and
scores exactly as ``mlpipeline predict`` does. Every rejection is a ``RequestFieldError`` naming the
field; dtype conversion errors come from :func:`mlpipeline.signature.conform` and name the column.
"""

from __future__ import annotations

import math
from typing import Any

from mlpipeline.errors import PayloadTooLargeError
from mlpipeline.serving.errors import RequestFieldError, RequestSchemaError
from mlpipeline.signature import Signature

#: Signature dtype → v2 datatype advertised in model metadata.
V2_DATATYPE = {"int": "INT64", "float": "FP64", "bool": "BOOL", "str": "BYTES", "datetime": "BYTES"}
_INTS = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
_FLOATS = {"FP16", "FP32", "FP64"}
#: v2 datatypes accepted for a column of each signature dtype (values are then conformed).
ACCEPTED_V2 = {
    "int": _INTS | _FLOATS,
    "float": _INTS | _FLOATS,
    "bool": {"BOOL"},
    "str": {"BYTES"},
    "datetime": {"BYTES"},
}


def check_batch(n_rows: int, max_rows: int, where: str) -> None:
    if n_rows == 0:
        raise RequestFieldError(f"{where}: empty batch, send at least one row", where)
    if n_rows > max_rows:
        raise PayloadTooLargeError(f"{where}: {n_rows} rows is over this server's limit of {max_rows} rows per request")


# --------------------------------------------------------------------------- v1
def frame_from_v1(body: Any, signature: Signature, max_rows: int) -> Any:
    """``{"instances": [{col: value, ...}, ...]}`` or ``{"instances": [[v1, v2, ...], ...]}`` → DataFrame."""
    import pandas as pd

    if not isinstance(body, dict):
        raise RequestSchemaError(f"request body must be a JSON object with 'instances', got {type(body).__name__}", "<body>")
    if "instances" not in body:
        raise RequestSchemaError("request body has no 'instances' list", "instances")
    unknown = sorted(set(body) - {"instances", "parameters", "id"})
    if unknown:
        raise RequestSchemaError(f"unexpected top-level key(s): {', '.join(unknown)}", unknown[0])
    instances = body["instances"]
    if not isinstance(instances, list):
        raise RequestSchemaError(f"'instances' must be a list, got {type(instances).__name__}", "instances")
    check_batch(len(instances), max_rows, "instances")
    names = signature.input_names
    expected = set(names)
    first = instances[0]
    if isinstance(first, dict):
        for i, row in enumerate(instances):
            if not isinstance(row, dict):
                raise RequestFieldError(f"instances[{i}]: every instance must be an object like instances[0]", f"instances[{i}]")
            if row.keys() != expected:
                keys = set(row)
                missing = [c for c in names if c not in keys]
                if missing:
                    raise RequestFieldError(f"instances[{i}]: missing column(s): {', '.join(missing)}", f"instances[{i}].{missing[0]}")
                extra = sorted(str(k) for k in keys - expected)
                raise RequestFieldError(f"instances[{i}]: unexpected column(s): {', '.join(extra)}", f"instances[{i}].{extra[0]}")
        columns = {c: [row[c] for row in instances] for c in names}
    elif isinstance(first, list):
        for i, row in enumerate(instances):
            if not isinstance(row, list) or len(row) != len(names):
                got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
                raise RequestFieldError(
                    f"instances[{i}]: expected a list of {len(names)} values in signature order ({', '.join(names)}), got {got}",
                    f"instances[{i}]",
                )
        columns = {c: [row[j] for row in instances] for j, c in enumerate(names)}
    else:
        raise RequestSchemaError(
            f"instances[0]: each instance must be an object (column → value) or a list in signature order, got {type(first).__name__}",
            "instances[0]",
        )
    # Numeric/bool columns let pandas infer the dtype (then conform's typed fast path applies); string
    # columns stay object so a number sent as text keeps its spelling ("1", not "1.0").
    kinds = {s.name: s.dtype for s in signature.inputs}
    return pd.DataFrame({c: pd.Series(v, dtype=object) if kinds[c] == "str" else pd.Series(v) for c, v in columns.items()})


def v1_response(pred: Any, signature: Signature) -> dict[str, Any]:
    """``{"predictions": [{"label": ..., "probability": ...}, ...]}`` from a ``predict_frame`` result."""
    rows: list[dict[str, Any]] = []
    labels = [_py(v) for v in pred["prediction"].tolist()]
    if signature.task == "regression":
        return {"predictions": [{"prediction": v} for v in labels]}
    if "probability" in pred.columns:
        for label, p in zip(labels, pred["probability"].tolist(), strict=True):
            rows.append({"label": label, "probability": float(p)})
    else:
        proba_cols = [f"proba_{c}" for c in signature.classes]
        probs = pred[proba_cols].to_numpy(dtype="float64")
        for label, ps in zip(labels, probs, strict=True):
            rows.append({"label": label, "probabilities": {str(c): float(p) for c, p in zip(signature.classes, ps, strict=True)}})
    return {"predictions": rows}


# --------------------------------------------------------------------------- v2
def input_metadata(signature: Signature) -> list[dict[str, Any]]:
    return [{"name": c.name, "datatype": V2_DATATYPE[c.dtype], "shape": [-1]} for c in signature.inputs]


def output_metadata(signature: Signature) -> list[dict[str, Any]]:
    if signature.task == "regression":
        return [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    label_type = _label_datatype(signature.classes)
    out = [{"name": "prediction", "datatype": label_type, "shape": [-1]}]
    if len(signature.classes) == 2 and signature.threshold is not None:
        out.append({"name": "probability", "datatype": "FP64", "shape": [-1]})
    else:
        out.append({"name": "probabilities", "datatype": "FP64", "shape": [-1, len(signature.classes)]})
    return out


def _label_datatype(classes: tuple[Any, ...]) -> str:
    if classes and all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    return "BYTES"


def _tensor(inp: Any) -> Any:
    """An InferInput's values as a numpy array of its declared shape."""
    import numpy as np
    from kserve.utils.numpy_codec import to_np_dtype

    where = f"inputs[{inp.name!r}]"
    if to_np_dtype(inp.datatype) is None:
        raise RequestFieldError(f"{where}: unknown datatype {inp.datatype!r}", f"{where}.datatype")
    shape = list(inp.shape)
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise RequestFieldError(f"{where}: shape must be non-negative integers, got {shape}", f"{where}.shape")
    try:
        arr = inp.as_numpy()
    except (ValueError, TypeError, OverflowError) as e:
        raise RequestFieldError(
            f"{where}: data does not fit shape {shape} and datatype {inp.datatype} ({e})", f"{where}.data"
        ) from e
    if inp.datatype == "BYTES":
        arr = np.vectorize(_text, otypes=[object])(arr) if arr.size else arr.astype(object)
    return arr


def _text(v: Any) -> Any:
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RequestFieldError(f"BYTES value is not UTF-8 text: {v[:20]!r}") from e
    return v


def _column_values(arr: Any, spec_dtype: str) -> list[Any]:
    """Tensor values to python objects; for BYTES, '' stands for a missing non-text value."""
    vals = arr.tolist()
    if arr.dtype == object and spec_dtype != "str":
        vals = [None if v == "" else v for v in vals]
    return vals


def frame_from_v2(request: Any, signature: Signature, max_rows: int) -> Any:
    """A kserve ``InferRequest`` → DataFrame.

    Two forms: one tensor per column (names = signature columns, shape ``[n]`` or ``[n, 1]``), or a
    single tensor of shape ``[n, n_columns]`` (datatype BYTES, or FP64/INT when every column is
    numeric) holding the columns in signature order.
    """
    import pandas as pd

    inputs = list(request.inputs or [])
    if not inputs:
        raise RequestSchemaError("'inputs' is empty: send one tensor per column or one [n, n_columns] tensor", "inputs")
    names = signature.input_names
    by_name = {c.name: c for c in signature.inputs}
    if len(inputs) == 1 and inputs[0].name not in by_name:
        return _frame_from_matrix(inputs[0], signature, max_rows)

    seen: dict[str, Any] = {}
    for inp in inputs:
        where = f"inputs[{inp.name!r}]"
        spec = by_name.get(inp.name)
        if spec is None:
            raise RequestFieldError(f"{where}: not a model input; inputs are {', '.join(names)}", where)
        if inp.name in seen:
            raise RequestFieldError(f"{where}: given more than once", where)
        if inp.datatype not in ACCEPTED_V2[spec.dtype]:
            raise RequestFieldError(
                f"{where}: datatype {inp.datatype} does not fit column type {spec.dtype} "
                f"(use {V2_DATATYPE[spec.dtype]})",
                f"{where}.datatype",
            )
        shape = list(inp.shape)
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise RequestFieldError(f"{where}: shape must be [n] or [n, 1] for a per-column tensor, got {shape}", f"{where}.shape")
        seen[inp.name] = _tensor(inp).reshape(-1)
    missing = [c for c in names if c not in seen]
    if missing:
        raise RequestFieldError(f"missing input tensor(s): {', '.join(missing)}", f"inputs[{missing[0]!r}]")
    lengths = {len(a) for a in seen.values()}
    if len(lengths) != 1:
        detail = ", ".join(f"{k}={len(v)}" for k, v in seen.items())
        raise RequestFieldError(f"input tensors have different lengths: {detail}", "inputs")
    check_batch(lengths.pop(), max_rows, "inputs")
    return pd.DataFrame(
        {c: pd.Series(_column_values(seen[c], by_name[c].dtype), dtype=object) for c in names}
    )


def _frame_from_matrix(inp: Any, signature: Signature, max_rows: int) -> Any:
    import pandas as pd

    names = signature.input_names
    where = f"inputs[{inp.name!r}]"
    shape = list(inp.shape)
    if len(shape) != 2 or shape[1] != len(names):
        raise RequestFieldError(
            f"{where}: is not a model input; a single tensor must have shape [n, {len(names)}] with columns "
            f"in signature order ({', '.join(names)}), got shape {shape}",
            f"{where}.shape",
        )
    numeric_only = all(c.dtype in ("int", "float") for c in signature.inputs)
    allowed = {"BYTES"} | ((_INTS | _FLOATS) if numeric_only else set())
    if inp.datatype not in allowed:
        hint = "BYTES or FP64" if numeric_only else "BYTES (the model has non-numeric columns)"
        raise RequestFieldError(f"{where}: datatype {inp.datatype} not accepted for a [n, n_columns] tensor; use {hint}", f"{where}.datatype")
    check_batch(shape[0], max_rows, where)
    arr = _tensor(inp)
    return pd.DataFrame(
        {c.name: pd.Series(_column_values(arr[:, j], c.dtype), dtype=object) for j, c in enumerate(signature.inputs)}
    )


def v2_outputs(pred: Any, signature: Signature) -> list[Any]:
    """``predict_frame`` result → kserve ``InferOutput`` tensors (see :func:`output_metadata`).

    Data are flat Python lists (row-major): KServe's REST encoder accepts them as is and its gRPC
    encoder cannot take numpy arrays when the request came with raw (binary) tensors.
    """
    from kserve import InferOutput

    n = len(pred)
    meta = {m["name"]: m for m in output_metadata(signature)}
    label_type = meta["prediction"]["datatype"]
    convert = {"BYTES": str, "INT64": int, "BOOL": bool}.get(label_type, float)
    labels = [convert(_py(v)) for v in pred["prediction"].tolist()]
    outs = [InferOutput(name="prediction", shape=[n], datatype=label_type, data=labels)]
    if "probability" in meta:
        outs.append(InferOutput(name="probability", shape=[n], datatype="FP64", data=pred["probability"].to_numpy("float64").tolist()))
    elif "probabilities" in meta:
        cols = [f"proba_{c}" for c in signature.classes]
        probs = pred[cols].to_numpy("float64")
        outs.append(InferOutput(name="probabilities", shape=[n, len(cols)], datatype="FP64", data=probs.ravel().tolist()))
    return outs


def _py(v: Any) -> Any:
    """numpy scalar → JSON-able python value."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
