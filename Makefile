# Thin wrapper over CMake. `make run` and `make test` are the README's two
# commands: each installs missing Debian packages, builds, then runs.
PREFIX ?= /usr/local
JOBS ?= $(shell nproc)
BUILD ?= build/release

.PHONY: all deps build run test install bench fuzz faults soak format crash-test sim clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@bash scripts/run.sh $(BUILD)

test: deps
	@bash scripts/test.sh

install: build
	@cmake --install $(BUILD) --prefix $(PREFIX)

bench: build
	@bash scripts/bench.sh $(BUILD)

fuzz: deps
	@bash scripts/fuzz.sh

faults: deps
	@bash scripts/faults.sh $(BUILD)

soak: deps
	@MINUTES=$${MINUTES:-10} bash scripts/soak.sh $(BUILD)

crash-test: build
	@STEAD_CRASH_ROUNDS=$${ROUNDS:-500} ctest --test-dir $(BUILD) -R crash --output-on-failure

# Deterministic simulation (docs/simulation.md): SEEDS=N seeds from 1, or
# SEED=S alone (with TRACE=1 to print its trace); STEPS=K steps per seed.
sim: build
	@$(BUILD)/tests/sim/stead-sim $(if $(SEED),--seed $(SEED),--seeds $${SEEDS:-100}) \
	  --steps $${STEPS:-2000} $(if $(TRACE),--trace) $(if $(CLUSTER),--cluster)

format:
	@git ls-files '*.c' '*.h' '*.cpp' | xargs clang-format -i

clean:
	rm -rf build
