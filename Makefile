# Gantry: `make up` runs it locally, `make test` runs the whole suite.
# Both install what is missing first (scripts/deps.sh), idempotently.
SHELL := /bin/bash
# Node 24 from the npm registry comes first on PATH when scripts/deps.sh put it in .tools
export PATH := $(CURDIR)/.tools/node_modules/.bin:$(PATH)

.PHONY: deps up test check typecheck lint unit bench clean

deps:
	@bash scripts/deps.sh

## up: a Consul dev agent, HAProxy and every Gantry part, against the local Docker engine
up: deps
	@node scripts/up.ts

## test: install what is missing, type-check, lint, then every test against the real engines
test: deps
	@$(MAKE) --no-print-directory check
	@node test/run.ts

check: typecheck lint

typecheck:
	@echo "==> tsc"
	@npx --no-install tsc -p tsconfig.json

lint:
	@echo "==> eslint"
	@npx --no-install eslint .

## bench: e.g. make bench SUITE=registrator
bench: deps
	@node bench/run.ts $(SUITE)

clean:
	rm -rf node_modules .tools
