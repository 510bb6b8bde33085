# The two commands: `make run` (set up and run on embedded defaults) and `make test` (set up and
# run the whole suite, with ruff and mypy).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test setup lint typecheck pytest clean

run:
	scripts/setup.sh run
	$(BIN)/giaoban db upgrade
	$(BIN)/giaoban serve --demo

test:
	scripts/setup.sh test
	$(MAKE) lint typecheck pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache test-artifacts
