# tradebook: `make demo` runs 20 simulated trading days; `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench browser-deps clean-runs lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,sweep,ml]'
	touch $(STAMP)

# vectorbt only for the benchmarks (numba, scipy): its own stamp, so `make test` does not pull it.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

demo: $(STAMP)
	$(BIN)/tradebook demo --fresh --days 20

# Browser tests drive Debian's Chromium; install it when missing (fail loudly otherwise).
browser-deps:
	@test -x /usr/bin/chromium && command -v chromedriver >/dev/null 2>&1 || { \
	  echo "installing Debian chromium + chromium-driver for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@test -x /usr/bin/chromium || { echo "chromium could not be installed: the browser tests cannot run" >&2; exit 1; }

test: $(STAMP) browser-deps
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# Static checks (configured in pyproject.toml): ruff's error rules, then mypy on lib/.
lint: $(STAMP)
	$(BIN)/ruff check lib tests bench
	$(BIN)/mypy

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run_all.py

clean-runs:
	rm -rf runs/20* runs/*.duckdb* runs/report.html runs/logs runs/backups
