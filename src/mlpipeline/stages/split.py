"""Split stage: seeded stratified train/validation/test, or time-ordered when a time column is set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpipeline.artifacts import atomic_write_json, read_parquet, write_parquet
from mlpipeline.config import DataConfig, SplitConfig, parse_section
from mlpipeline.errors import DataError


def split_frame(df: Any, dcfg: DataConfig, scfg: SplitConfig) -> tuple[Any, Any, Any, dict[str, Any]]:
    from sklearn.model_selection import train_test_split

    n = len(df)
    n_test = int(round(n * scfg.test_size))
    n_val = int(round(n * scfg.validation_size))
    if n - n_test - n_val < 2 or n_test < 1 or n_val < 1:
        raise DataError(f"{n} rows are too few to split into train/validation/test with sizes {scfg.test_size}/{scfg.validation_size}")
    if dcfg.time_column:
        if dcfg.time_column not in df.columns:
            raise DataError(f"data.time_column {dcfg.time_column!r} not in the data")
        ordered = df.sort_values(dcfg.time_column, kind="stable")
        train, val, test = ordered.iloc[: n - n_test - n_val], ordered.iloc[n - n_test - n_val : n - n_test], ordered.iloc[n - n_test :]
        method = f"time-ordered by {dcfg.time_column}"
    elif scfg.group_column:
        from sklearn.model_selection import GroupShuffleSplit

        if scfg.group_column not in df.columns:
            raise DataError(f"split.group_column {scfg.group_column!r} not in the data")
        groups = df[scfg.group_column].astype(str)
        if groups.nunique() < 3:
            raise DataError(f"split.group_column {scfg.group_column!r} has {groups.nunique()} group(s); need at least 3")

        def take(frame: Any, fraction: float, seed: int) -> tuple[Any, Any]:
            gss = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
            keep, hold = next(gss.split(frame, groups=groups.loc[frame.index]))
            return frame.iloc[keep], frame.iloc[hold]

        rest, test = take(df, scfg.test_size, scfg.seed)
        train, val = take(rest, scfg.validation_size / (1 - scfg.test_size), scfg.seed)
        method = f"grouped by {scfg.group_column}"
    else:
        strat = df[dcfg.target] if (scfg.stratify and dcfg.task == "classification") else None
        if strat is not None and strat.value_counts().min() < 3:
            raise DataError(f"target {dcfg.target!r}: a class has fewer than 3 rows; cannot stratify the split (set split.stratify: false)")
        rest, test = train_test_split(df, test_size=n_test, random_state=scfg.seed, stratify=strat)
        strat_rest = rest[dcfg.target] if strat is not None else None
        train, val = train_test_split(rest, test_size=n_val, random_state=scfg.seed, stratify=strat_rest)
        method = "stratified random" if strat is not None else "random"
    info = {"method": method, "seed": scfg.seed, "rows": {"train": len(train), "validation": len(val), "test": len(test)}}
    if dcfg.task == "classification":
        info["class_balance"] = {
            name: {str(k): int(v) for k, v in part[dcfg.target].value_counts().items()}
            for name, part in (("train", train), ("validation", val), ("test", test))
        }
        if train[dcfg.target].nunique() < 2:
            raise DataError(f"training split of target {dcfg.target!r} has a single class")
    return train.reset_index(drop=True), val.reset_index(drop=True), test.reset_index(drop=True), info


def split(
    data_path: str | Path,
    data_cfg: dict[str, Any] | DataConfig,
    split_cfg: dict[str, Any] | SplitConfig,
    out_train: str | Path,
    out_validation: str | Path,
    out_test: str | Path,
    out_info: str | Path,
) -> dict[str, Any]:
    dcfg = parse_section(DataConfig, data_cfg, "data")
    scfg = parse_section(SplitConfig, split_cfg, "split")
    train, val, test, info = split_frame(read_parquet(data_path), dcfg, scfg)
    info["sha256"] = {
        "train": write_parquet(train, out_train),
        "validation": write_parquet(val, out_validation),
        "test": write_parquet(test, out_test),
    }
    atomic_write_json(out_info, info)
    return info
