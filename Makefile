# Everything a fresh clone needs: `make demo` (main job) and `make test` (the suite).
# Both create the virtual environment when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kdlic-installed

.PHONY: setup test lint demo check-report clean

$(STAMP): pyproject.toml Makefile src/kdlic/codec/_rans.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch/torchvision pinned to the releases this project is tested with (on the dev
	# machines pip takes them from local disk).
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev,plots,demo,export]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

demo: $(STAMP)
	$(VENV)/bin/kdlic demo

# The report as a browser sees it: every image loads, no table is empty (needs Debian's
# chromium: apt install chromium; skipped without it).
check-report: $(STAMP)
	$(PY) -m pytest -q -rs tests/test_report.py -k browser

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
