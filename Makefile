# The two commands of the README:
#   make demo   install deps, build, generate a small random Gemma 4 checkpoint, run it
#   make test   install deps, build, run the whole test suite (ctest), then the ASan+UBSan build's,
#               then every parser fuzzer briefly (fuzz-smoke)
#   make fuzz   the libFuzzer harnesses of the parsers (clang, ASan+UBSan), FUZZ_SECONDS each
.PHONY: all deps build demo test test-fast test-arm asan fuzz-build fuzz fuzz-smoke clean format

BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
DEMO_DIR ?= $(BUILD)/demo-e2b
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 10

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The demo model has random weights: its text is gibberish and its drafter is never right. It shows
# the pipeline, that speculative output equals plain output, and the statistics.
demo: build
	@test -f $(DEMO_DIR)-asst/config.json || $(BUILD)/specula make-random $(DEMO_DIR) --preset e2b-tiny --assistant $(DEMO_DIR)-asst
	$(BUILD)/specula inspect $(DEMO_DIR)
	$(BUILD)/specula generate -m $(DEMO_DIR) -p "The quick brown fox" -n 48
	$(BUILD)/specula generate -m $(DEMO_DIR) -md $(DEMO_DIR)-asst --draft-max 3 -p "The quick brown fox" -n 48

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test: test-fast asan fuzz-smoke

# The kernels cross-compiled for 64-bit ARM (NEON) and tested under qemu-user (CI runs it too).
test-arm:
	bash scripts/test-arm.sh

asan: deps
	@test -f $(ASAN_BUILD)/CMakeCache.txt || cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPECULA_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

# Each harness runs from its seed corpus (tests/fuzz/corpus/NAME, copied to $(FUZZ_BUILD)) with its
# dictionary; a crash, leak, hang or OOM fails the target and leaves the input in
# $(FUZZ_BUILD)/fuzz-artifacts. fuzz-smoke is the short run `make test` ends with.
fuzz-build: deps
	@test -f $(FUZZ_BUILD)/CMakeCache.txt || CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DSPECULA_FUZZ=ON
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

fuzz: fuzz-build
	bash scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

fuzz-smoke: fuzz-build
	bash scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-arm $(FUZZ_BUILD)
