# The two commands of the README: `make demo` and `make test`. Each prepares this machine first
# (services, Docker Engine, virtualenv, sandbox images); every step is idempotent.

FRAMEWORKS ?= sklearn onnx
PYTEST_ARGS ?=

.PHONY: setup images demo test bench

setup:
	scripts/machine.sh services docker_engine venv

images: setup
	.venv/bin/evaluator images build $(FRAMEWORKS)

demo: images
	.venv/bin/evaluator demo

test: images
	.venv/bin/pytest $(PYTEST_ARGS)

bench: images
	for b in bench/*.py; do .venv/bin/python $$b || exit 1; done
