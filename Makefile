# spool's tasks. `make run` starts spool on its embedded default; `make test`
# runs every test.
GO ?= go
STATICCHECK_VERSION ?= v0.8.2

.PHONY: run build test test-race lint bench fmt

run:
	$(GO) run ./cmd/spool serve --schema examples/observatory.sql

build:
	$(GO) build -o bin/spool ./cmd/spool

# Every test, with the race detector (CI runs this).
test: test-race

test-race:
	$(GO) test -race -count=1 ./...

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

fmt:
	gofmt -w .
