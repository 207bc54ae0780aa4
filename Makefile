# gongche — the two commands a newcomer needs:  make demo   and   make test
# Both install what they need on a fresh Debian machine (root, or sudo available).

SHELL := /bin/bash
UV := bash scripts/uv.sh
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)
PYTEST_ARGS ?=

# Debian packages: SpatiaLite for the embedded database; the real services for the tests.
DEMO_PKGS := libsqlite3-mod-spatialite python3 python3-venv
TEST_PKGS := $(DEMO_PKGS) postgresql postgresql-postgis mosquitto mosquitto-clients redis-server \
             chromium fonts-noto-cjk

.PHONY: demo test system-demo system-test venv lint typecheck bench-ingest bench-mileage \
        bench-scheduler clean

demo: system-demo venv
	$(UV) run --frozen gongche demo

test: system-test venv
	$(UV) run --frozen pytest $(PYTEST_ARGS)

system-demo:
	@bash scripts/apt-ensure.sh $(DEMO_PKGS)

system-test:
	@bash scripts/apt-ensure.sh $(TEST_PKGS)

venv:
	@$(UV) --version >/dev/null 2>&1 || bash scripts/install-uv.sh
	$(UV) sync --frozen

lint: venv
	$(UV) run --frozen ruff check .

typecheck: venv
	$(UV) run --frozen mypy fleet

bench-mileage: venv
	$(UV) run --frozen python -m bench.mileage --json bench/results/mileage.json

bench-scheduler: venv
	$(UV) run --frozen python -m bench.scheduler --set lilim100 --seconds 10 \
		--json bench/results/scheduler-lilim100.json

clean:
	rm -rf .venv .pytest_cache var test-artifacts
