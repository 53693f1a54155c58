# `make run`: set up .venv and run the whole DAG on the embedded default (params.yaml).
# `make test`: set up .venv and run the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup chromium offline-plots lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP) offline-plots
	$(BIN)/python -m pipeline check params.yaml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@echo "report: $(CURDIR)/reports/index.html"

# The report's browser test needs Debian's Chromium; install it when missing and we may (root + apt).
chromium:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "note: /usr/bin/chromium is missing; the browser test will be skipped"

# `dvc plots show/diff` pages that render offline: Vega, Vega-Lite and Vega-Embed from npm, inlined into a
# page template in .cache/vega/ that this checkout's DVC uses (`dvc config --local plots.html_template`).
offline-plots: $(STAMP)
	@$(BIN)/python -m pipeline.plots_offline || \
		echo "note: dvc plots pages will load Vega from a CDN (needs npm once, to fetch it)"

test: $(STAMP) chromium offline-plots
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

lint: $(STAMP)
	$(BIN)/ruff check stylegan pipeline stages tests benchmarks

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
