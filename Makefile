# embedops: one entry point for setup, tests and checks, used locally and in CI.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
IMAGE ?= embedops:latest
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export TQDM_DISABLE := 1

.PHONY: setup test test-fast check lint typecheck bench wheel image up clean

setup:  ## fresh .venv with the pinned dependencies (torch first: the CPU wheel)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,ray]'
	# model2vec's distill extra pins transformers<5.4; skeletoken works with the pinned 5.24.
	$(PY) -m pip install --quiet --no-deps -c constraints.txt skeletoken

test:  ## the whole suite: unit, integration (real model) and quality (shared data)
	$(PY) -m pytest

test-fast:  ## unit tests only (fake embedder)
	$(PY) -m pytest -m "not integration and not quality"

lint:
	$(PY) -m ruff check src tests benchmarks deploy
	$(PY) -m ruff format --check src tests benchmarks deploy

typecheck:
	$(PY) -m mypy

check: lint typecheck test  ## what CI runs (.ci/run): ruff, mypy, then the whole suite

bench:  ## every backend against sentence-transformers; writes benchmarks/results/bench.json
	$(PY) -m benchmarks.bench

wheel:  ## the wheel users install, in dist/ (tests/test_wheel.py checks it alone)
	rm -rf dist build
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir dist .

image:  ## the service image (deploy/Dockerfile; needs Docker Hub and PyTorch's CPU index)
	docker build -f deploy/Dockerfile -t $(IMAGE) .

up:  ## the service with Redis, Prometheus and Grafana (deploy/docker-compose.yml)
	docker compose -f deploy/docker-compose.yml up -d --build

clean:
	rm -rf .embedops .pytest_cache .mypy_cache .ruff_cache
