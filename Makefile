# OpenRL entry points. `make demo` and `make test` work on a fresh Debian machine.
SHELL := /bin/bash
BUILD ?= build
JOBS ?= $(shell nproc)
PY := .venv/bin/python
CMAKE_FLAGS ?=

.PHONY: setup build test test-cpp test-py fuzz demo bench fmt lint clean

setup:
	@scripts/setup

$(BUILD)/build.ninja: CMakeLists.txt
	cmake -S . -B $(BUILD) -G Ninja -DOPENRL_PYTHON=$(CURDIR)/.venv/bin/python $(CMAKE_FLAGS)

build: setup $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

test: build
	@scripts/test

demo: build
	$(BUILD)/src/openrl/cli/openrl quickstart

bench: build
	@scripts/bench

fuzz: setup
	@scripts/fuzz 20

fmt:
	@git ls-files 'src/*.cc' 'src/*.h' | xargs clang-format -i

lint: build
	@git ls-files 'src/*.cc' | grep -v '_fuzz.cc' | xargs clang-tidy -p $(BUILD) --quiet

clean:
	rm -rf $(BUILD) build-fuzz
