# spool's tasks. `make run` starts spool on its embedded default; `make test`
# runs every test.
GO ?= go
STATICCHECK_VERSION ?= v0.8.2

.PHONY: run build test test-race lint bench bench-smoke benchmarks fmt fuzz-smoke soak

run:
	$(GO) run ./cmd/spool serve --schema examples/observatory.sql

# spool and spool-bench, side by side in bin/ (spool-bench starts the
# spool beside it).
build:
	$(GO) build -o bin/spool ./cmd/spool
	$(GO) build -o bin/spool-bench ./cmd/spool-bench

# Every test, with the race detector (CI runs this).
test: test-race

test-race:
	$(GO) test -race -count=1 -timeout 20m ./...

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# The fault campaigns (cmd/spool campaign_test.go) with fresh seeds, run
# after run, for SOAK_MINUTES in all (each run's faults last
# SOAK_RUN); the first failure stops it and prints its seed. Needs
# redis-server and PostgreSQL, as make test does.
SOAK_MINUTES ?= 30
SOAK_RUN ?= 3m
soak:
	@end=$$(( $$(date +%s) + 60 * $(SOAK_MINUTES) )); runs=0; \
	while [ $$(date +%s) -lt $$end ]; do \
		runs=$$((runs + 1)); echo "soak: run $$runs"; \
		if ! SPOOL_REQUIRE_SERVERS=1 SPOOL_CAMPAIGN=$(SOAK_RUN) $(GO) test -race -count=1 -v -timeout 0 \
			-run '^(TestCampaignServers|TestCampaignEmbedded)$$' ./cmd/spool > soak.log 2>&1; then \
			cat soak.log; echo "soak: run $$runs failed (its log: soak.log)"; exit 1; \
		fi; \
		grep -E 'campaign seed|faults injected|history:|drained' soak.log; \
	done; echo "soak: $$runs runs passed"

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

# Every spool-bench scenario for about a second on the embedded default
# (~40 s): fails on errors and impossible results (nothing acknowledged,
# lost writes), never on timing. The same on throwaway Redis + PostgreSQL
# runs in make test (TestBenchSmokeServers); BENCHMARKS.md has full runs.
bench-smoke: build
	bin/spool-bench ingest drain visibility read events outage telemetry \
		--duration 1s --concurrency 64 --outage 3s --telemetry-rate 20000

# The full spool-bench on both shapes (about 15 minutes), its JSON kept
# in docs/bench/, and the tables of BENCHMARKS.md and the README
# generated from it.
benchmarks: build
	mkdir -p docs/bench
	bin/spool-bench ingest drain visibility read events telemetry --json > docs/bench/embedded.jsonl
	bin/spool-bench ingest replicated drain visibility read events telemetry --servers --json > docs/bench/servers.jsonl
	bin/spool-bench report --into BENCHMARKS.md embedded=docs/bench/embedded.jsonl servers=docs/bench/servers.jsonl
	bin/spool-bench report --headline --into README.md embedded=docs/bench/embedded.jsonl servers=docs/bench/servers.jsonl

fmt:
	gofmt -w .

# Every fuzz target for FUZZTIME executions, a few seconds each; CI runs
# it. Crashers land in testdata/fuzz and become regression cases of the
# plain tests. A count, not a duration: Go 1.26's fuzz coordinator can
# fail a duration's end with "context deadline exceeded" and no crasher
# (golang/go#75804, fixed in Go 1.27), as it did once in CI here.
FUZZTIME ?= 20000x
fuzz-smoke:
	@set -e; for t in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -h '^func Fuzz' $$t/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "fuzz $$t $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$t; \
		done; \
	done
