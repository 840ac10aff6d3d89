# news-ingest: every entry point. The Python environment is .venv/, created when missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help install demo test lint format test-fast lock mutation s3-up s3-down s3-status site bench bench-extract bench-meta bench-page-type bench-dedupe bench-store bench-crawl bench-e2e bench-warc bench-state scale-demo system-packages clean

help:
	@echo "make demo         start embedded S3 + sample site, run the news_ingest DAG once, read articles back"
	@echo "make test         apt packages if missing (chromium, postgresql, redis-server), lint (ruff, mypy), the test suite (what CI runs)"
	@echo "make bench-*      benchmarks: extract, meta, page-type, dedupe, store, crawl, e2e, warc, state"
	@echo "make scale-demo   PostgreSQL + Redis + Airflow on CeleryExecutor (two workers): news_ingest over 8 sources, one worker killed"
	@echo "make mutation     break each safety guarantee in a copy of the tree; fails if a test misses one"
	@echo "make s3-up|s3-down|s3-status   the embedded SeaweedFS"
	@echo "make site         serve the offline sample news site on 127.0.0.1:8701-8704"

# The environment: pinned direct dependencies, constrained by the full lock.
$(STAMP): requirements.txt requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -c requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.demo

test: lint system-packages
	$(BIN)/python -m pytest -q

# Debian packages the tests start: chromium, postgresql, redis-server (apt, when missing; needs root).
system-packages:
	bash scripts/install-system-packages.sh

# Lint, format and type checks (configured in pyproject.toml); `make test` runs them first.
lint: $(STAMP)
	$(BIN)/ruff check pipeline spiders dags tests benchmarks examples
	$(BIN)/ruff format --check pipeline spiders dags tests benchmarks examples
	$(BIN)/mypy

# Apply the formatter and the safe lint fixes.
format: $(STAMP)
	$(BIN)/ruff check --fix pipeline spiders dags tests benchmarks examples
	$(BIN)/ruff format pipeline spiders dags tests benchmarks examples

# Break each safety guarantee (SSRF, robots, limits, digests, conditional writes ...) in a temporary copy of the
# tree and run the tests that must notice; exits 1 on a survivor. Run it before changing a guard.
mutation: $(STAMP)
	$(BIN)/python scripts/mutation.py

# Regenerate the lock from the current environment (after changing requirements.txt).
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock

s3-up: $(STAMP)
	$(BIN)/python -m pipeline s3 up
s3-down: $(STAMP)
	$(BIN)/python -m pipeline s3 down
s3-status: $(STAMP)
	$(BIN)/python -m pipeline s3 status

site: $(STAMP)
	$(BIN)/python -m examples.sample_site serve

bench: bench-extract bench-meta bench-page-type bench-dedupe bench-store bench-crawl bench-e2e bench-warc bench-state

bench-extract: $(STAMP)
	$(BIN)/python -m benchmarks.bench_extract
bench-meta: $(STAMP)
	$(BIN)/python -m benchmarks.bench_meta
bench-page-type: $(STAMP)
	$(BIN)/python -m benchmarks.bench_page_type
bench-dedupe: $(STAMP)
	$(BIN)/python -m benchmarks.bench_dedupe
bench-store: $(STAMP)
	$(BIN)/python -m benchmarks.bench_store
bench-crawl: $(STAMP)
	$(BIN)/python -m benchmarks.bench_crawl --news --render --repeat 3
bench-e2e: $(STAMP)
	$(BIN)/python -m benchmarks.bench_e2e
bench-warc: $(STAMP)
	$(BIN)/python -m benchmarks.bench_warc --e2e
bench-state: $(STAMP)
	$(BIN)/python -m benchmarks.bench_state --sizes 10000,100000,1000000

# PostgreSQL + Redis + Airflow on CeleryExecutor with two workers: news_ingest over 8 sample sources,
# one worker killed mid-task, the rows compared with a LocalExecutor run.
scale-demo: $(STAMP) system-packages
	$(BIN)/python scripts/cluster.py

clean:
	-$(BIN)/python -m pipeline s3 down
	rm -rf var .pytest_cache
