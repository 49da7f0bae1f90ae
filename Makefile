# Two entry points (see README): `make demo` and `make test`. Both create/reuse .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.dermadv-installed

.PHONY: setup demo test unit lint docs bench browser

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e ".[all,ray,postgres,search,test,docs]"
	# sklesion pins TensorFlow; Keras 3 runs its model on the PyTorch backend, so install it without deps.
	$(PIP) install -q --no-deps sklesion==0.2.2
	touch $(STAMP)

# Chromium for the report and reader-study browser tests (Debian package; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

demo: setup
	$(VENV)/bin/dermadv demo $(DEMO_ARGS)

test: setup browser
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m mypy  # the whole package; strict on the extension points ([tool.mypy] in pyproject.toml)
	$(PY) -m deptry src  # every import in src/ belongs to a declared dependency ([tool.deptry])
	$(PY) -m mkdocs build --strict --quiet  # the API reference builds without a warning
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)  # no data needed
	$(PY) -m pytest -q tests/integration $(PYTEST_ARGS)  # real images: ../shared/data or DERMADV_DATA

# The unit layer only: synthetic arrays and images, no data, well under a minute.
unit: setup
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

# API reference from the docstrings (mkdocs + mkdocstrings); warnings are errors. Output: build/docs/
docs: setup
	$(PY) -m mkdocs build --strict

lint: setup
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m mypy
