"""Ingest stage: any source → one Parquet file + a schema/fingerprint JSON.

Sources: a shipped dataset name (see mlpipeline.datasets), a CSV or Parquet path, or an http(s)
URL to a CSV/Parquet file. The fingerprint (rows, columns, dtypes, content sha256) is what the
model's lineage records and what caching keys on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlpipeline.artifacts import atomic_write_json, sha256_file, write_parquet
from mlpipeline.config import DataConfig, parse_section
from mlpipeline.errors import DataError


def frame_sha256(df: Any) -> str:
    """Content hash of a DataFrame independent of file encoding (values + column names + dtypes)."""
    import pandas as pd

    h = hashlib.sha256()
    h.update("|".join(f"{c}:{t}" for c, t in df.dtypes.astype(str).items()).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def fingerprint(df: Any) -> dict[str, Any]:
    return {
        "rows": int(len(df)),
        "columns": [str(c) for c in df.columns],
        "dtypes": {str(c): str(t) for c, t in df.dtypes.items()},
        "sha256": frame_sha256(df),
    }


def _sniff(path: str) -> str:
    """Suffix for a file without a known one (KFP artifacts have none): Parquet by magic bytes, else CSV."""
    with open(path, "rb") as f:
        return ".parquet" if f.read(4) == b"PAR1" else ".csv"


def _read_file(path: str, suffix: str) -> Any:
    import pandas as pd

    if not suffix and Path(path).is_file():
        suffix = _sniff(path)
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt", ".gz"):
            return pd.read_csv(path)
    except pd.errors.EmptyDataError as e:
        raise DataError(f"{path}: file is empty (no header, no rows)") from e
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read as {suffix.lstrip('.')} ({e})") from e
    raise DataError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")


def read_source(source: str, seed: int = 42) -> Any:
    """Load a dataset name, local path or http(s) URL into a DataFrame."""
    parsed = urlparse(source)
    if parsed.scheme in ("http", "https"):
        import tempfile
        import urllib.error
        import urllib.request

        suffix = Path(parsed.path).suffix.lower() or ".csv"
        with tempfile.TemporaryDirectory() as d:
            local = Path(d) / f"download{suffix}"
            try:
                with urllib.request.urlopen(source, timeout=60) as r, open(local, "wb") as f:  # noqa: S310
                    while chunk := r.read(1 << 20):
                        f.write(chunk)
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                raise DataError(f"cannot download {source}: {e}") from e
            return _read_file(str(local), suffix)
    p = Path(source)
    if p.suffix or "/" in source or p.exists():
        if not p.is_file():
            raise DataError(f"data file not found: {source}")
        return _read_file(str(p), p.suffix.lower())
    from mlpipeline.datasets import load_dataset

    return load_dataset(source, seed=seed)


def ingest(data_cfg: dict[str, Any] | DataConfig, out_data: str | Path, out_schema: str | Path) -> dict[str, Any]:
    """Read the configured source, check the basics, write Parquet + fingerprint JSON.

    Returns the fingerprint. Fails (writing nothing) on an empty table, a missing target column,
    duplicated column names, or a column named in ``drop_columns`` that does not exist.
    """
    cfg = parse_section(DataConfig, data_cfg, "data")
    df = read_source(cfg.source, seed=cfg.seed)
    if df.columns.duplicated().any():
        dup = df.columns[df.columns.duplicated()].tolist()
        raise DataError(f"{cfg.source}: duplicated column names: {dup}")
    df.columns = [str(c) for c in df.columns]
    if len(df) == 0:
        raise DataError(f"{cfg.source}: no rows")
    if cfg.target not in df.columns:
        raise DataError(f"{cfg.source}: target column {cfg.target!r} not found; columns: {', '.join(df.columns)}")
    unknown = [c for c in cfg.drop_columns if c not in df.columns]
    if unknown:
        raise DataError(f"data.drop_columns names column(s) not in the data: {', '.join(unknown)}")
    df = df.drop(columns=list(cfg.drop_columns))
    if cfg.sample_rows and cfg.sample_rows < len(df):
        df = df.sample(n=cfg.sample_rows, random_state=cfg.seed).sort_index()
    df = df.reset_index(drop=True)
    fp = fingerprint(df)
    fp["source"] = cfg.source
    file_sha = write_parquet(df, out_data)
    fp["file_sha256"] = file_sha
    atomic_write_json(out_schema, fp)
    return fp


__all__ = ["fingerprint", "frame_sha256", "ingest", "read_source", "sha256_file"]
