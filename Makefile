# dopplersky workers: build, test, demo and run the daily snapshot.
# `make demo` and `make test` are the two commands a new machine needs (see README.md).
SHELL := /bin/bash
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BIN := $(BUILD)/bin
RUN_DIR ?= .run
ARGS ?=

.PHONY: all build deps test test-unit test-sanitize demo demo-stop snapshot migrate health clean \
        bench bench-fetch bench-load bench-requests build-release install fuzz verify report \
        deps-appview test-appview

all: build

deps:
	@scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

# Every test: unit, [db] (private cluster), CLI golden tests and end to end.
test: deps
	$(MAKE) build
	cd $(BUILD) && ctest --output-on-failure -j1

# End to end against Bluesky's own AppView (@atproto/dev-env's TestNetwork, tests/appview/README.md):
# Node 22 and the pinned npm packages land in ~/.cache/dopplersky on first use, outside the checkout.
deps-appview:
	@scripts/deps.sh appview

test-appview: deps deps-appview
	$(MAKE) build
	DS_BIN_DIR=$(abspath $(BIN)) tests/appview/run.sh

test-unit: build
	$(BIN)/ds-unit-tests "~[db]"

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer, in its own build dir.
test-sanitize: deps
	$(MAKE) build-sanitize/CMakeCache.txt && cmake --build build-sanitize -j$(JOBS)
	cd build-sanitize && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j1

build-sanitize/CMakeCache.txt:
	cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Debug -DDS_SANITIZE=ON

# A local demo: private PostgreSQL + the fake AppView, two days of snapshots, a table of results.
demo: deps
	$(MAKE) build
	scripts/demo.sh $(RUN_DIR)

demo-stop:
	scripts/demo.sh --stop $(RUN_DIR)

# The real daily job. Configure with DATABASE_URL / DB_* / PG* / .env and BLUESKY_BASE_URL.
snapshot: build
	DS_BIN_DIR=$${DS_BIN_DIR:-$(abspath $(BIN))} pipelines/snapshot.sh $(ARGS)

migrate: build
	$(BIN)/ds-migrate $(ARGS)

health: build
	DS_BIN_DIR=$${DS_BIN_DIR:-$(abspath $(BIN))} pipelines/snapshot.sh --health-check $(ARGS)

# The operator's view (docs/operations.md): audit the database read-only; write the HTML report.
verify: build
	$(BIN)/ds-verify $(ARGS)

REPORT ?= report.html
report: build
	$(BIN)/ds-report -o $(REPORT) $(ARGS)

# The five stages, ds-migrate and the pipeline scripts into $(PREFIX)/bin (the scripts find the
# programs beside themselves), the migrations and docs into $(PREFIX)/share (docs/operations.md).
PREFIX ?= /usr/local
DS_PROGRAMS := ds-select-users ds-fetch-profiles ds-fetch-feeds ds-aggregate ds-load ds-migrate ds-verify ds-report
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/dopplersky/sql $(DESTDIR)$(PREFIX)/share/doc/dopplersky
	install -m 755 $(addprefix $(BIN)/,$(DS_PROGRAMS)) $(DESTDIR)$(PREFIX)/bin/
	install -m 755 pipelines/snapshot.sh $(DESTDIR)$(PREFIX)/bin/dopplersky-snapshot
	install -m 755 pipelines/snapshot-sharded.sh $(DESTDIR)$(PREFIX)/bin/dopplersky-snapshot-sharded
	install -m 644 sql/*.sql $(DESTDIR)$(PREFIX)/share/dopplersky/sql/
	install -m 644 docs/operations.md docs/records.md $(DESTDIR)$(PREFIX)/share/doc/dopplersky/

# Benchmarks print tables and ratios against a baseline measured in the same run (docs/performance.md).
# Optimised build of their own so `make test`'s build type does not matter; without the tests,
# which are not needed there (and GCC 12 at -O3 raises false -Wrestrict warnings in them).
build-release:
	cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DDS_BUILD_TESTS=OFF >/dev/null
	cmake --build build-release -j$(JOBS)

bench-fetch: deps
	$(MAKE) build-release
	DS_BIN_DIR=$(CURDIR)/build-release/bin bench/fetch/run.sh

bench-load: deps
	$(MAKE) build-release
	DS_BIN_DIR=$(CURDIR)/build-release/bin bench/load/run.sh $(BENCH_LOAD_ARGS)

# API requests per account over 8 simulated days, always-feed vs the request economy (docs/performance-requests.md).
bench-requests: deps
	$(MAKE) build-release
	DS_BIN_DIR=$(CURDIR)/build-release/bin bench/requests/run.sh $(BENCH_REQUESTS_ARGS)

bench: bench-fetch bench-load bench-requests

# libFuzzer targets (clang): each runs FUZZ_SECONDS, corpora seeded from tests/fixtures.
FUZZ_SECONDS ?= 60
fuzz:
	@scripts/deps.sh fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh

clean:
	rm -rf $(BUILD) build-sanitize build-release build-fuzz
