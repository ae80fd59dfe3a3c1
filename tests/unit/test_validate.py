from __future__ import annotations

import json

import numpy as np
import pytest

from mlpipeline.errors import SchemaValidationError
from mlpipeline.stages.validate import validate

DATA = {"source": "x", "target": "churn", "positive_class": "Yes"}


def check(tmp_path, df, rules=None, **vcfg):
    path = tmp_path / "d.parquet"
    df.to_parquet(path, index=False)
    return validate(path, DATA, {"min_rows": 10, "columns": rules or {}, **vcfg}, tmp_path / "report.json")


def test_clean_data_passes_with_report(tmp_path, churn_df, churn_config):
    rules = churn_config.sections()["validation"]["columns"]
    report = check(tmp_path, churn_df, rules)
    assert report["passed"] and report["rows"] == 1500
    assert report["missing"]["total_charges"]["count"] == churn_df["total_charges"].isna().sum()
    assert set(report["class_balance"]) == {"Yes", "No"}
    assert json.loads((tmp_path / "report.json").read_text())["passed"] is True


def test_missing_declared_column(tmp_path, churn_df):
    with pytest.raises(SchemaValidationError, match="declared column.*tenure"):
        check(tmp_path, churn_df.drop(columns=["tenure"]), {"tenure": {"dtype": "int"}})


def test_all_nan_column_names_the_column(tmp_path, churn_df):
    churn_df["monthly_charges"] = np.nan
    with pytest.raises(SchemaValidationError, match=r"'monthly_charges': 100\.0% missing"):
        check(tmp_path, churn_df)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] is False, "the report is written even when validation fails"


def test_single_class_target(tmp_path, churn_df):
    churn_df["churn"] = "No"
    with pytest.raises(SchemaValidationError, match="single class"):
        check(tmp_path, churn_df)


def test_wrong_type_names_column_and_rows(tmp_path, churn_df):
    churn_df["tenure"] = churn_df["tenure"].astype(str) + " months"
    with pytest.raises(SchemaValidationError, match=r"'tenure': expected int, found str \(e\.g\. rows \[0, 1"):
        check(tmp_path, churn_df, {"tenure": {"dtype": "int"}})


def test_out_of_range_hard_rule_gives_example_rows(tmp_path, churn_df):
    churn_df.loc[[3, 7], "tenure"] = -5
    with pytest.raises(SchemaValidationError, match=r"'tenure' failed greater_than_or_equal_to\(0\.0\) in 2 row\(s\), e\.g\. rows \[3, 7\]"):
        check(tmp_path, churn_df, {"tenure": {"min": 0}})


def test_soft_rules_only_warn(tmp_path, churn_df):
    churn_df.loc[[3], "tenure"] = -5
    churn_df["constant"] = 1
    dup = churn_df.head(200)
    df = churn_df._append(dup, ignore_index=True)
    report = check(tmp_path, df, {"tenure": {"min": 0, "severity": "soft"}})
    assert report["passed"]
    joined = " ".join(report["warnings"])
    assert "'tenure' failed greater_than_or_equal_to(0.0)" in joined and "'constant' is constant" in joined and "duplicated rows" in joined
    assert report["out_of_range"]["tenure"]["below_min"] == 2  # row 3 and its duplicate


def test_disallowed_values_and_null_target(tmp_path, churn_df):
    churn_df.loc[5, "contract"] = "Weekly"
    churn_df.loc[9, "churn"] = None
    with pytest.raises(SchemaValidationError) as e:
        check(tmp_path, churn_df, {"contract": {"allowed": ["Month-to-month", "One year", "Two year"]}})
    msg = str(e.value)
    assert "'contract' failed isin(" in msg and "rows [5]" in msg and "'Weekly'" in msg
    assert "target 'churn' has 1 missing value(s), e.g. rows [9]" in msg


def test_too_few_rows(tmp_path, churn_df):
    with pytest.raises(SchemaValidationError, match="only 5 rows"):
        check(tmp_path, churn_df.head(5))
