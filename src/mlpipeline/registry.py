"""A file-system model registry: versions are content-addressed model directories.

Layout under ``<root>/<model_name>/``::

    versions/<version>/        a packaged model dir (see mlpipeline.packaging); <version> = manifest sha256[:12]
    index.json                 {"model": name, "production": <version>|null, "versions": [{version, created_at,
                                 metrics, blessed, reason, sha256}, ...]}

Every mutation writes a new index.json atomically (temp + rename) under an exclusive lock file,
so concurrent pipeline runs cannot lose each other's registrations. A registry on a cluster is the
same directory on a PVC (``registry.pvc_name`` mounts it into the package and gate steps).
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlpipeline.artifacts import (
    MANIFEST,
    atomic_write_json,
    copy_tree_atomic,
    read_json,
    sha256_file,
    verify_manifest,
)
from mlpipeline.errors import RegistryError


class ModelRegistry:
    def __init__(self, root: str | Path, model_name: str):
        self.root = Path(root)
        self.model_name = model_name
        self.dir = self.root / model_name
        self.index_path = self.dir / "index.json"

    # ------------------------------------------------------------------ reading
    def index(self) -> dict[str, Any]:
        if not self.index_path.is_file():
            return {"model": self.model_name, "production": None, "versions": []}
        idx = read_json(self.index_path)
        if not isinstance(idx, dict) or not isinstance(idx.get("versions"), list):
            raise RegistryError(f"{self.index_path}: malformed registry index")
        return idx

    def versions(self) -> list[dict[str, Any]]:
        return list(self.index()["versions"])

    def version_dir(self, version: str) -> Path:
        d = self.dir / "versions" / version
        if not d.is_dir():
            raise RegistryError(f"model {self.model_name!r} has no version {version!r} in {self.root}")
        return d

    def production(self) -> dict[str, Any] | None:
        """The production version's index entry (with ``path``), or None when there is none."""
        idx = self.index()
        prod = idx.get("production")
        if not prod:
            return None
        for v in idx["versions"]:
            if v["version"] == prod:
                return {**v, "path": str(self.version_dir(prod))}
        raise RegistryError(f"{self.index_path}: production version {prod!r} is not listed")

    # ------------------------------------------------------------------ writing
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def register(
        self,
        model_dir: str | Path,
        *,
        metrics: dict[str, Any] | None = None,
        blessed: bool = False,
        reason: str = "",
        promote: bool = False,
    ) -> dict[str, Any]:
        """Copy a verified model dir into the registry (idempotent by content) and list it."""
        verify_manifest(model_dir)
        digest = sha256_file(Path(model_dir) / MANIFEST)
        version = digest[:12]
        with self._locked():
            target = self.dir / "versions" / version
            if not target.exists():
                copy_tree_atomic(model_dir, target)
            idx = self.index()
            entry = next((v for v in idx["versions"] if v["version"] == version), None)
            if entry is None:
                entry = {
                    "version": version,
                    "sha256": digest,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "metrics": metrics or {},
                    "blessed": blessed,
                    "reason": reason,
                }
                idx["versions"].append(entry)
            if promote:
                idx["production"] = version
                idx["promoted_at"] = time.time()
            atomic_write_json(self.index_path, idx)
        return {**entry, "path": str(target), "production": idx["production"] == version}

    def promote(self, version: str) -> None:
        with self._locked():
            self.version_dir(version)
            idx = self.index()
            if not any(v["version"] == version for v in idx["versions"]):
                raise RegistryError(f"version {version!r} is not listed in {self.index_path}")
            idx["production"] = version
            idx["promoted_at"] = time.time()
            atomic_write_json(self.index_path, idx)
