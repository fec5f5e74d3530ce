# The two commands of the README: `make demo` and `make test`. Each prepares this machine first
# (services, Docker Engine, virtualenv, sandbox images); every step is idempotent.

FRAMEWORKS ?= sklearn onnx pytorch tensorflow
# No registry here: a debootstrap base, framework wheels fetched by the host's pip (outside the checkout).
IMAGE_BUILD_ARGS ?= --base debootstrap --download --wheelhouse /var/cache/evaluator/wheelhouse
PYTEST_ARGS ?=
# Test processes: most e2e time is waiting on subprocesses and containers, so 3 beat the 2 cores.
TEST_WORKERS ?= 3
# The platform image (API, workers, migrations; docker-compose.yml's evaluator-platform:latest) over that same base.
PLATFORM_BASE_IMAGE ?= evaluator-rootfs:bookworm

.PHONY: setup images demo test test-unit lint typecheck bench platform-image

setup:
	scripts/machine.sh services docker_engine gvisor monitoring browser venv

images: setup
	.venv/bin/evaluator images build $(IMAGE_BUILD_ARGS) $(FRAMEWORKS)

demo: images
	.venv/bin/evaluator demo

test: images platform-image
	.venv/bin/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The edit loop: pure logic only, no services, seconds.
test-unit: setup
	.venv/bin/pytest tests/unit -q $(PYTEST_ARGS)

# flake8 and isort read their settings from setup.cfg.
lint: setup
	.venv/bin/flake8 evaluator tests bench
	.venv/bin/isort --check-only --diff evaluator tests bench

# mypy reads its settings (and which libraries are untyped) from setup.cfg.
typecheck: setup
	.venv/bin/mypy evaluator

bench: images
	for b in bench/*.py; do .venv/bin/python $$b || exit 1; done

# Wheels by the host's pip into .platform-wheels/, then docker build; seconds when nothing changed.
platform-image: images
	BASE_IMAGE=$(PLATFORM_BASE_IMAGE) PIP=.venv/bin/pip scripts/build-platform-image.sh evaluator-platform:latest
