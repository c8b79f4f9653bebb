# Two commands set up everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON_PREFERENCE := only-system
# uv lives in a project-local environment (scripts/bootstrap-uv.sh): a distribution's python3
# is externally managed (PEP 668) and takes no pip installs.
UV_VERSION := 0.13.9
UV := $(CURDIR)/.tools/uv/bin/uv
export PATH := $(CURDIR)/.tools/uv/bin:$(PATH)
PYTEST_WORKERS ?= 2

.PHONY: help bootstrap sync services chromium prometheus check format schemas test test-unit \
        test-integration test-e2e test-browser bench demo
.PHONY: images push-images docker-engine compose-cli

help:
	@echo "make demo   - run the whole stack locally (codex-sim as the upstream)"
	@echo "make test   - every tier: lint, types, unit, contract, integration, e2e, browser"
	@echo "make check | test-unit | test-integration | test-e2e | test-browser | bench | schemas"
	@echo "make images [REGISTRY=registry.example.com/acme/ TAG=1.2.3] | push-images - with Docker"

bootstrap:
	@scripts/bootstrap-uv.sh $(UV_VERSION)

sync: bootstrap
	$(UV) sync --all-packages --locked

services:
	@scripts/ensure-services.sh

chromium:
	@scripts/ensure-chromium.sh

# promtool and amtool check the shipped rules and configs; the e2e tier runs a real Prometheus
# and Alertmanager against the services.
prometheus:
	@scripts/ensure-prometheus.sh

check: sync
	$(UV) run ruff format --check .
	$(UV) run ruff check .
	$(UV) run mypy shared/src services/*/src tools/*/src tests bench

format: sync
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

schemas: sync
	$(UV) run python -m codexpool_shared.events.schemas shared/schemas

# The browser tier runs in a pytest process of its own: Playwright's sync API keeps an event loop
# running in the worker's main thread, which pytest-asyncio's async tests cannot share.
test: sync services chromium prometheus check
	rc=0; \
	$(UV) run pytest -m 'not browser' -n $(PYTEST_WORKERS) -p no:cacheprovider || rc=$$?; \
	$(UV) run pytest -m browser -n $(PYTEST_WORKERS) -p no:cacheprovider || rc=$$?; \
	exit $$rc

test-unit: sync prometheus
	$(UV) run pytest tests/unit tests/contract -p no:cacheprovider

test-integration: sync services
	$(UV) run pytest tests/integration -m integration -p no:cacheprovider

test-e2e: sync services prometheus
	$(UV) run pytest tests/e2e -m e2e -p no:cacheprovider

test-browser: sync services chromium
	$(UV) run pytest tests/browser -m browser -p no:cacheprovider

# Images: $(REGISTRY)codexpool/<service>:$(TAG), each built from the one Dockerfile with its
# package as the build argument (docker-compose.yml names the same images).
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
REGISTRY ?=
TAG ?= $(VERSION)
IMAGES := router health admin-api ui codex-sim
image_package = codexpool-$(if $(filter codex-sim,$(1)),sim,$(1))

images: $(IMAGES:%=image-%)

push-images: $(IMAGES:%=push-image-%)

image-%: docker-engine
	docker build --build-arg PACKAGE=$(call image_package,$*) -t $(REGISTRY)codexpool/$*:$(TAG) .

push-image-%: image-%
	docker push $(REGISTRY)codexpool/$*:$(TAG)

docker-engine:
	@docker info >/dev/null 2>&1 || { echo "no Docker engine answers (docker info failed): start one, or build the images on a machine that has one; nothing was built" >&2; exit 1; }

compose-cli:
	@scripts/ensure-compose.sh

test test-unit: compose-cli

bench: sync services
	@for b in bench/*.py; do echo "== $$b"; $(UV) run python "$$b"; done

demo: sync services
	$(UV) run python scripts/demo.py $(DEMO_ARGS)
