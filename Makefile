# make run   : install what is missing, build (Release), run the default job
# make test  : same set-up, then the whole suite: unit + golden tests, the ASan+UBSan build's tests,
#              and each libFuzzer target for a bounded time
# make build / make asan / make fuzz / make clean for the pieces. The Release build compiles the CUDA
# backend when nvcc is found (no GPU needed); the sanitizer and fuzzer builds are CPU-only.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 30
CMAKE_GEN  := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

.PHONY: all deps assets build run test unit asan fuzz clean

all: build

deps:
	@bash tools/install_deps.sh

assets: deps
	@bash tools/fetch_assets.sh

build: deps
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)

run: build assets
	@bash tools/default_run.sh $(BUILD)/lmscope

unit: build assets
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan: deps assets
	@test -f $(ASAN_BUILD)/CMakeCache.txt || cmake -S . -B $(ASAN_BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLMSCOPE_SANITIZE=ON -DLMSCOPE_CUDA=OFF
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target lmscope lmscope_tests
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

fuzz: deps
	@test -f $(FUZZ_BUILD)/CMakeCache.txt || CXX=clang++ cmake -S . -B $(FUZZ_BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLMSCOPE_FUZZ=ON -DLMSCOPE_TESTS=OFF -DLMSCOPE_CUDA=OFF
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_safetensors fuzz_config
	@bash tools/run_fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

test: unit asan fuzz
	@bash tools/test_summary.sh $(BUILD) $(ASAN_BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
