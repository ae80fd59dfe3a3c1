from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipeline.errors import InvalidInputError
from mlpipeline.signature import ColumnSpec, Signature, conform, infer_inputs

SIG = Signature(
    inputs=(ColumnSpec("n", "int", nullable=False), ColumnSpec("x", "float"), ColumnSpec("s", "str"), ColumnSpec("b", "bool")),
    task="classification", target="y", classes=("No", "Yes"), positive_class="Yes", threshold=0.4,
)


def frame(**over):
    base = {"n": [1, 2], "x": [0.5, None], "s": ["a", None], "b": [True, False]}
    base.update(over)
    return pd.DataFrame(base)


def test_conform_orders_and_types():
    out = conform(frame()[["s", "b", "x", "n"]], SIG)
    assert list(out.columns) == ["n", "x", "s", "b"]
    assert out["n"].dtype == "int64" and out["x"].dtype == "float64" and out["s"].tolist() == ["a", None]


def test_numbers_as_strings_are_accepted():
    out = conform(frame(n=["3", "4"], x=["1.5", "2"]), SIG)
    assert out["n"].tolist() == [3, 4] and out["x"].tolist() == [1.5, 2.0]


@pytest.mark.parametrize(
    ("df", "match"),
    [
        (frame().drop(columns=["x"]), "missing column.*x"),
        (frame(extra=[1, 2]), "unexpected column.*extra"),
        (frame(n=["one", "two"]), "column 'n': cannot read values as int"),
        (frame(n=[1.5, 2]), "column 'n'.*whole numbers"),
        (frame(x=[np.inf, 1.0]), "column 'x': infinite"),
        (frame(n=[1, None]), "column 'n': null/NaN values are not allowed"),
        (frame(b=["maybe", True]), "column 'b'.*not a boolean"),
        (frame(x=[True, 1.0]), "column 'x'.*booleans are not numbers"),
        (frame(s=[{"a": 1}, "b"]), "column 's'.*expected a string"),
        (frame().head(0), "empty batch"),
    ],
    ids=["missing", "extra", "not-int", "fractional-int", "inf", "null-not-allowed", "bad-bool", "bool-as-float", "dict-as-str", "empty"],
)
def test_conform_rejects_with_named_column(df, match):
    with pytest.raises(InvalidInputError, match=match):
        conform(df, SIG)


def test_target_column_is_ignored_and_extra_allowed_on_request():
    assert list(conform(frame(y=["Yes", "No"]), SIG).columns) == ["n", "x", "s", "b"]
    assert "extra" not in conform(frame(extra=[1, 2]), SIG, allow_extra=True).columns


def test_signature_roundtrip_and_inference(churn_df):
    assert Signature.from_dict(SIG.to_dict()) == SIG
    specs = {c.name: c for c in infer_inputs(churn_df)}
    assert specs["tenure"].dtype == "int" and specs["total_charges"].dtype == "float" and specs["contract"].dtype == "str"
    assert specs["contract"].categories == ("Month-to-month", "One year", "Two year")


def test_typed_fast_path_equals_the_per_value_path(churn_df, monkeypatch):
    """The whole-frame fast path must give exactly what per-column coercion gives (JSON-decoded
    object columns and Parquet-typed columns alike, with NaNs)."""
    import json

    import pandas.testing as pt

    import mlpipeline.signature as sig_mod

    X = churn_df.drop(columns=["churn"])
    sig = Signature(inputs=infer_inputs(X), task="classification", target="churn", classes=("No", "Yes"), positive_class="Yes")
    as_json = pd.DataFrame(json.loads(X.to_json(orient="records"))).astype(object)
    fast = [conform(f, sig) for f in (X, as_json)]
    assert sig_mod._conform_typed(X, sig) is not None and sig_mod._conform_typed(as_json, sig) is not None
    monkeypatch.setattr(sig_mod, "_conform_typed", lambda *a: None)
    slow = [conform(f, sig) for f in (X, as_json)]
    for a, b in zip(fast, slow, strict=True):
        pt.assert_frame_equal(a, b)
