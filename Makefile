# callwatch — the two commands a newcomer needs:
#   make demo   set up, then stream the bundled sample call through the
#               server and follow the supervisor feed live
#   make test   set up, then run the whole test suite
# Set-up installs build packages (scripts/setup.sh), builds in release mode
# and fetches + converts the Whisper model into models/ (cached).

CARGO ?= cargo
BIN := target/release/callwatch
# A call where the agent puts the caller on hold without asking: its alerts
# fire live. Its call control (hold/unhold) comes from the sidecar file.
SAMPLE ?= tests/fixtures/calls/hold_violation_call.wav

.PHONY: all setup deps test-deps web build model demo test test-core bench lint fixtures clean-models

all: build

deps:
	@bash scripts/setup.sh

test-deps:
	@bash scripts/setup.sh test

# The dashboard: TypeScript generated from proto/, bundled into web/dist/,
# which the binary embeds.
WEB_SOURCES := $(wildcard web/src/* proto/callwatch/v1/*.proto) web/package-lock.json web/build.mjs web/buf.gen.yaml
# `npm install`, not `npm ci`: npm 11 wrongly finds the lock file short of
# the other platforms' optional buf binaries. Versions are pinned exactly.
web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm install --no-audit --no-fund
web/dist/index.html: web/node_modules/.package-lock.json $(WEB_SOURCES)
	cd web && npm run build

web: deps web/dist/index.html

build: deps web
	$(CARGO) build --release --locked

model: build
	$(BIN) model fetch

setup: model

demo: setup
	SAMPLE=$(SAMPLE) BIN=$(BIN) bash scripts/demo.sh

# Release mode: the tests run real Whisper inference, and whisper.cpp built in
# debug mode is an order of magnitude slower. One test at a time: each
# inference already uses both cores, and ggml's spinning worker threads slow
# to a crawl when oversubscribed.
# The core crate alone: no whisper.cpp, no tonic, no system packages beyond
# a Rust toolchain. Fails if either ever becomes a dependency of it.
test-core:
	@if $(CARGO) tree -p callwatch-core -e normal --prefix none | grep -E '^(whisper-rs|tonic)'; then \
		echo "callwatch-core must not depend on whisper-rs or tonic" >&2; exit 1; fi
	$(CARGO) test -p callwatch-core --locked

test: setup test-deps
	$(CARGO) test --release --locked --workspace -- --test-threads=1

bench: setup
	$(BIN) bench transcribe
	$(BIN) bench capacity
	$(BIN) bench rules
	$(BIN) bench serve

lint: web
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets --locked -- -D warnings
	cd web && npx tsc -p .

# Regenerates the synthetic calls (needs espeak-ng and sox).
fixtures:
	bash scripts/make-calls.sh

clean-models:
	rm -rf models/*.bin models/cache
