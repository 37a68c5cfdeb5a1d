# Two commands for a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=

DEMO_ARGS ?=
PAGE_BENCH_ARGS ?=

.PHONY: install demo test test-slow test-fast proto bench bench-scale clean help browser prometheus dashboard-preview page-bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: 2.13.0 is the CPU build on the machine's disk; an open range pulls CUDA.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its dev tools

proto: $(STAMP)  ## regenerate gen/ from proto/
	$(BIN)/python scripts/gen_proto.py

test: $(STAMP)  ## run the whole suite against real Milvus and Redis processes
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)  ## also the slow checks (installs PyPI's milvus 2.3 standalone as a reference server)
	$(BIN)/pip install -q -e '.[real-milvus]'
	$(BIN)/python -m pytest --runslow $(PYTEST_ARGS)

test-fast: $(STAMP)  ## pure-logic tests only (no servers)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

demo: $(STAMP)  ## start an embedded cluster, import a sample catalog, run searches, print the page's address; Ctrl-C stops (DEMO_ARGS=--exit: stop at the end)
	$(BIN)/python -m devkit.demo $(DEMO_ARGS)

browser: $(STAMP)  ## install Debian's chromium for the browser test when missing (the test does it too)
	$(BIN)/python -c "from devkit import syspkg; print(syspkg.chromium())"

prometheus: $(STAMP)  ## install Debian's prometheus when missing (dev up --observability does it too)
	$(BIN)/python -c "from devkit import syspkg; print(syspkg.prometheus())"

dashboard-preview: $(STAMP)  ## redraw docs/img/dashboard-preview.png from a dev cluster scraped by a real Prometheus
	$(BIN)/python scripts/dashboard_preview.py

page-bench: $(STAMP)  ## page-to-results vs gRPC time per scene, headless Chromium, on the running demo (PAGE_BENCH_ARGS="--synthetic 24": own cluster)
	$(BIN)/python bench/page.py $(PAGE_BENCH_ARGS)

BENCH_ARGS ?=
bench: $(STAMP)  ## every benchmark (niced, < 30 min here) -> bench/results/*.json + PNG, bench/REPORT.md; smoke: BENCH_ARGS="--scale tiny --out /tmp/smoke"
	$(BIN)/pip install -q -e '.[real-milvus]'  # real Milvus standalone nodes (as test-slow)
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

SCALE_OUT ?= bench/results/scale
PVD = nice -n 5 $(BIN)/python bench/proxy_vs_direct.py --latency-queries 100 --throughput-rounds 3
bench-scale: $(STAMP)  ## proxy vs direct at 100k + 300k rows (both engines, FLAT/HNSW/IVF_FLAT) and 1M (IVF_FLAT, both engines): ~2 h here -> bench/results/scale/, bench/REPORT.md
	$(BIN)/pip install -q -e '.[real-milvus]'
	$(PVD) --sizes 100000,300000 --indexes IVF_FLAT,HNSW,FLAT --engines milvus-lite,milvus --out $(SCALE_OUT)/a
	$(PVD) --sizes 1000000 --indexes IVF_FLAT --engines milvus-lite --out $(SCALE_OUT)/b
	$(PVD) --sizes 1000000 --indexes IVF_FLAT --engines milvus --out $(SCALE_OUT)/c
	$(BIN)/python bench/proxy_vs_direct.py --merge $(SCALE_OUT)/a/proxy_vs_direct.json $(SCALE_OUT)/b/proxy_vs_direct.json $(SCALE_OUT)/c/proxy_vs_direct.json --out $(SCALE_OUT)
	$(BIN)/python bench/run_all.py --report-only

clean:  ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .hypothesis
