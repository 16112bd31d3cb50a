# Switchboard: the two commands of a fresh machine are `make run` and
# `make test`; everything they need is installed by scripts/ensure-deps.sh.

CARGO ?= cargo
DATA_DIR ?= ./data

.PHONY: run test attacks deps build release lint fmt bench soak clean

## Run switchboard-signaling on its embedded defaults: SIP 5060 UDP+TCP,
## REST on 8080, SQLite under ./data.
run: deps
	$(CARGO) run --release --bin switchboard-signaling -- --data-dir $(DATA_DIR)

## Lint and every test: unit, RFC 4475 torture, fuzz run, sipp scenarios.
test: deps lint
	$(CARGO) test --workspace --all-targets

## The attack suite alone (part of make test too): every test file named
## attacks_*.rs, each attack over real sockets on loopback.
attacks: deps
	$(CARGO) test --workspace $(patsubst %.rs,--test %,$(notdir $(wildcard crates/*/tests/attacks_*.rs)))

deps:
	@scripts/ensure-deps.sh

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --workspace --release

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Benchmarks against the reference systems (prints figures; not a test).
bench: deps release
	bench/run.sh
	bench/calls.sh
	BENCH_BUILD=0 bench/rtp.sh
	scripts/ensure-services.sh
	BENCH_BUILD=0 bench/cluster.sh

## Soak (not part of make test): SOAK_SECONDS (600) of calls at 80 % of
## the measured rate, media on a share, vanishing callers, a signaling
## restart in the middle; checks leaks, sessions, memory and CDRs.
soak: deps release
	bench/soak.sh

clean:
	$(CARGO) clean
