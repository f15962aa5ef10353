# The two commands of the README:
#   make demo   install deps, build, run the trained demo pair plainly and speculatively
#   make test   install deps, check formatting, build, run the whole test suite (ctest), then the
#               ASan+UBSan build's, then every parser fuzzer briefly (fuzz-smoke)
#   make fuzz   the libFuzzer harnesses of the parsers (clang, ASan+UBSan), FUZZ_SECONDS each
.PHONY: all deps build demo test test-fast test-arm asan fuzz-build fuzz fuzz-smoke clean format \
  format-check

BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 10
# Ninja compiles a library's objects while the libraries below it still build (make waits for
# each target), which keeps both cores of a small CI machine busy. Existing build directories keep
# the generator they were configured with.
CMAKE_GENERATOR ?= $(if $(shell command -v ninja),Ninja,Unix Makefiles)
export CMAKE_GENERATOR

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The demo pair: a small Gemma 4 target trained on the Debian Reference and its distilled MTP
# assistant (models/demo/pair.npz, expanded into $(BUILD)/demo; tools/distill/README.md). One prompt
# is decoded plainly and speculatively; the texts must be identical. Without the pack: a random
# pair.
demo: build
	bash scripts/demo.sh $(BUILD)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test: format-check test-fast asan fuzz-smoke

# The kernels cross-compiled for 64-bit ARM (NEON) and tested under qemu-user (CI runs it too).
test-arm:
	bash scripts/test-arm.sh

asan: deps
	@test -f $(ASAN_BUILD)/CMakeCache.txt || cmake -S . -B $(ASAN_BUILD) \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPECULA_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS)

# Each harness runs from its seed corpus (tests/fuzz/corpus/NAME, copied to $(FUZZ_BUILD)) with its
# dictionary; a crash, leak, hang or OOM fails the target and leaves the input in
# $(FUZZ_BUILD)/fuzz-artifacts. fuzz-smoke is the short run `make test` ends with.
fuzz-build: deps
	@test -f $(FUZZ_BUILD)/CMakeCache.txt || \
	  CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DSPECULA_FUZZ=ON
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

fuzz: fuzz-build
	bash scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

fuzz-smoke: fuzz-build
	bash scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS)

# C++ as clang-format writes it, and no line over 100 characters (scripts/format-check.sh).
format-check: deps
	bash scripts/format-check.sh

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-arm $(FUZZ_BUILD)
