# Two commands set up a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARED_DATA := $(abspath ../shared/data)
export RECFORGE_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
# A CPU build of PyTorch lying on disk (as on our build machines) is installed first, so the
# pinned range in pyproject.toml is already satisfied and pip fetches no CUDA build.
TORCH_CPU_WHEEL := $(firstword $(wildcard /opt/wheels/torch-*+cpu-*.whl))

.PHONY: quickstart test install lint bench clean

# Two stamps: the base install (what `recforge quickstart` needs) and the extras that the tests
# and benchmarks use on top of it. Byte-compiling is left to the first import (--no-compile):
# compiling torch's and numba's sources up front costs more time than it saves on one run.
PIP_INSTALL := $(PY) -m pip install -q --no-compile

$(VENV)/.base-installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(TORCH_CPU_WHEEL),$(PIP_INSTALL) "$(TORCH_CPU_WHEEL)",)
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed: $(VENV)/.base-installed
	$(PIP_INSTALL) -e '.[dev,bench,ann,text,tune,serve,redis,dist,docs]'
	# obp (the Open Bandit Pipeline, a test-only reference for recforge.bandits.ope) pins
	# torch==1.12 and python<3.11 in its metadata although its estimators run here: it is
	# installed without its declared dependencies, beside the four it imports that we lack.
	$(PIP_INSTALL) --no-deps --ignore-requires-python 'obp==0.5.7'
	$(PIP_INSTALL) seaborn tqdm pyyaml mypy-extensions
	touch $@

install: $(VENV)/.installed

quickstart: $(VENV)/.base-installed
	$(VENV)/bin/recforge quickstart

test: install
	$(PY) -m pytest -n 2 -q

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info
