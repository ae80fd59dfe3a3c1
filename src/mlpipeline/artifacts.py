"""Artifact I/O: atomic writes, sha256 content addressing, manifests, verified unpickling.

Rules kept here so no stage re-implements them:
- every write goes to a temp file in the target directory, is fsynced, then ``os.replace``d;
- a directory of files is described by ``MANIFEST.json`` (sha256 + size per file);
- nothing is unpickled before its bytes hash to the sha256 recorded for it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlpipeline.errors import ArtifactError, IntegrityError

MANIFEST = "MANIFEST.json"
_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it over ``path``, on error remove it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; artifacts are read by other uids (containers, KServe)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(path, canonical_json(obj))


def read_json(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ArtifactError(f"missing artifact file: {p}") from e
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{p}: not valid JSON ({e})") from e


def write_parquet(df: Any, path: str | os.PathLike[str]) -> str:
    """Write a DataFrame atomically as Parquet; returns the file's sha256."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return sha256_file(path)


def read_parquet(path: str | os.PathLike[str]) -> Any:
    import pandas as pd

    p = Path(path)
    if p.is_dir():  # KFP Dataset artifacts may be a directory holding data.parquet
        p = p / "data.parquet"
    try:
        return pd.read_parquet(p)
    except FileNotFoundError as e:
        raise ArtifactError(f"missing dataset: {p}") from e


# ----------------------------------------------------------------------------- pickles
def dump_joblib(obj: Any, path: str | os.PathLike[str]) -> str:
    """Pickle ``obj`` with joblib atomically; returns the sha256 of the written bytes.

    Serialised in memory first so the bytes are exactly what gets hashed and written (no compression,
    no timestamps: same object state -> same sha256).
    """
    import joblib

    buf = io.BytesIO()
    joblib.dump(obj, buf, compress=0)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def load_joblib_verified(path: str | os.PathLike[str], expected_sha256: str) -> Any:
    """Unpickle only after the file's bytes match ``expected_sha256``."""
    import joblib

    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"missing artifact file: {p}")
    data = p.read_bytes()
    actual = sha256_bytes(data)
    if actual != expected_sha256:
        raise IntegrityError(f"{p}: sha256 {actual[:12]}… does not match the recorded {expected_sha256[:12]}…; refusing to unpickle")
    return joblib.load(io.BytesIO(data))


def save_verified_object(obj: Any, directory: str | os.PathLike[str], name: str) -> str:
    """Pickle ``obj`` to ``directory/name`` plus ``name.sha256``; returns the sha256.

    Used for artifacts passed between KFP tasks: the consumer calls :func:`load_verified_object`.
    """
    d = Path(directory)
    digest = dump_joblib(obj, d / name)
    atomic_write_text(d / f"{name}.sha256", digest + "\n")
    return digest


def load_verified_object(directory: str | os.PathLike[str], name: str) -> Any:
    d = Path(directory)
    sha_file = d / f"{name}.sha256"
    if not sha_file.is_file():
        raise ArtifactError(f"{d / name}: no recorded sha256 ({sha_file.name}); refusing to unpickle")
    return load_joblib_verified(d / name, sha_file.read_text().strip())


# ----------------------------------------------------------------------------- manifests
def build_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    root = Path(directory)
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST and not p.name.startswith("."):
            rel = p.relative_to(root).as_posix()
            files[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    return {"algorithm": "sha256", "files": files}


def write_manifest(directory: str | os.PathLike[str]) -> str:
    """Write MANIFEST.json for every file in ``directory``; returns the manifest's own sha256.

    The manifest digest identifies the whole directory (content address of the model version).
    """
    manifest = build_manifest(directory)
    text = canonical_json(manifest)
    atomic_write_text(Path(directory) / MANIFEST, text)
    return sha256_bytes(text.encode())


def verify_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every file against MANIFEST.json; raise IntegrityError on any mismatch, missing or extra file."""
    root = Path(directory)
    if not root.is_dir():
        raise ArtifactError(f"model directory not found: {root}")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise IntegrityError(f"{root}: no {MANIFEST}; not a packaged model directory (or incomplete)")
    manifest = read_json(mpath)
    recorded = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(recorded, dict) or not recorded:
        raise IntegrityError(f"{mpath}: malformed manifest (no files)")
    problems = []
    for rel, meta in recorded.items():
        p = root / rel
        if not p.is_file():
            problems.append(f"missing {rel}")
        elif sha256_file(p) != meta.get("sha256"):
            problems.append(f"modified {rel}")
    actual = build_manifest(root)["files"]
    problems += [f"unexpected {rel}" for rel in sorted(set(actual) - set(recorded))]
    if problems:
        raise IntegrityError(f"{root}: integrity check failed: " + ", ".join(problems))
    return manifest


def copy_tree_atomic(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy a directory to ``dst`` via a temp sibling + rename (dst must not exist)."""
    dst = Path(dst)
    if dst.exists():
        raise ArtifactError(f"refusing to overwrite existing directory {dst}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst
