# explorer: the two everyday commands are `make lab` and `make test`.
#
#   make lab      install into .venv, open notebooks/01_quickstart.ipynb in JupyterLab
#   make app      install into .venv, serve one app as a standalone page with Voila (APP=mae|attention|...)
#   make test     install into .venv (+ Debian test deps), run pytest
#
# Variables (override on the command line, e.g. `make test PYTEST_ARGS="-k io -q"`):
#   PYTHON       interpreter used to create .venv (>= 3.10)        [python3]
#   TORCH_SPEC   torch requirement, installed before anything else  [torch==2.13.0; `torch` when nvidia-smi exists]
#   TORCH_INDEX  extra index for torch, e.g. https://download.pytorch.org/whl/cpu for a CPU-only wheel
#   PYTEST_ARGS  arguments for pytest                               []
#   PYTEST_WORKERS  pytest-xdist workers (`-n`); 0 runs in one process [auto: one per core]
#   LAB_ARGS     extra arguments for `jupyter lab` (e.g. --ip=0.0.0.0 --port=8890)
#   APP          the app `make app` serves: a notebook of notebooks/apps/ (mae, attention, alignment, video,
#                rgbd, audio_visual, uniformer)                        [mae]
#   APP_IP       the address `make app` listens on; 0.0.0.0 (with VOILA_ARGS=--token) shares it on a LAN  [127.0.0.1]
#   VOILA_ARGS   extra arguments for `voila` (e.g. --port=8870 --token)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONSTRAINTS := $(VENV)/constraints.txt

# torch first, pinned: an unpinned `torch` resolves to a ~3 GB CUDA build on PyPI.
# With an NVIDIA GPU, the default PyPI (CUDA) build is what you want.
ifneq ($(shell command -v nvidia-smi 2>/dev/null),)
TORCH_SPEC ?= torch
else
TORCH_SPEC ?= torch==2.13.0
endif
TORCH_INDEX ?=
TORCH_INDEX_ARGS := $(if $(strip $(TORCH_INDEX)),--extra-index-url $(TORCH_INDEX))

PIP_FLAGS ?= -q
# pip on some machines prints many harmless "Location ... is ignored" warnings; drop them.
PIP_QUIET_FILTER := 2>&1 | { grep -v -E 'Location .* is ignored' || true; }

PYTEST_ARGS ?=
# One pytest-xdist worker per core (tests in one file stay on one worker: module fixtures are built once).
PYTEST_WORKERS ?= auto
PYTEST_XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)
# Where the test recipe records pytest's exit status (read by .ci/run).
PYTEST_EXIT_FILE ?= test-artifacts/pytest-exit-code

SYSDEPS ?= chromium fonts-dejavu-core fonts-liberation poppler-utils espeak-ng asterisk-core-sounds-en-wav

LAB_ARGS ?=
LAB_ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

APP ?= mae
APPS := $(sort $(basename $(notdir $(wildcard notebooks/apps/*.ipynb))))
APP_IP ?= 127.0.0.1
VOILA_ARGS ?=

.PHONY: help install sysdeps lab app app-name test pytest bench mutate clean heldout-media train-mini-mae train-mini-video-mae train-mini-fusion train-mini-rgbd-mae train-mini-av-mae train-mini-uniformer

help:
	@echo "make lab             install into $(VENV) and open notebooks/01_quickstart.ipynb in JupyterLab"
	@echo "make app APP=mae     install into $(VENV) and serve one app as a page (Voila, http://127.0.0.1:8866): $(APPS)"
	@echo "make test            install (+ Debian packages: $(SYSDEPS)) and run pytest"
	@echo "make install         only create/update $(VENV)"
	@echo "make sysdeps         only install the Debian packages the tests need"
	@echo "make pytest          run pytest in the existing $(VENV) (no install checks)"
	@echo "make bench           run bench/*.py"
	@echo "make mutate MODULE=m mutation testing of one core module (tools/mutate.py --list; tests/MUTATION.md)"
	@echo "make train-mini-mae  train the small MAE into data/models/mini-mae"
	@echo "make train-mini-fusion  train the small image-text model into data/models/mini-fusion (+ model card)"
	@echo "make train-mini-rgbd-mae / train-mini-av-mae  train the multimodal MAEs into data/models/ (+ model cards)"
	@echo "make train-mini-video-mae  train the small video MAE into data/models/mini-video-mae (+ model card)"
	@echo "make heldout-media   fetch the real held-out videos (Debian opencv-doc) into .cache/heldout"
	@echo "make train-mini-uniformer  train the small UniFormer into data/models/mini-uniformer (+ model card)"
	@echo "make clean           remove $(VENV), caches and test artifacts"

$(PY):
	@found=$$($(PYTHON) -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || echo "no working Python"); \
	if ! $(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then \
	  echo "error: PYTHON=$(PYTHON) is $$found; explorer needs Python >= 3.10 (3.11 tested)." >&2; \
	  echo "       Install one, or point at it: make $(or $(MAKECMDGOALS),install) PYTHON=python3.11" >&2; exit 1; fi
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	@echo "Installing $(strip $(TORCH_SPEC) $(TORCH_INDEX_ARGS)) into $(VENV)"
	$(PY) -m pip install $(PIP_FLAGS) $(TORCH_INDEX_ARGS) "$(TORCH_SPEC)" $(PIP_QUIET_FILTER)
	$(PY) -c 'from importlib.metadata import version; print("torch==" + version("torch"))' > $(CONSTRAINTS)
	@echo "Pinned $$(cat $(CONSTRAINTS)) in $(CONSTRAINTS); installing the project"
	$(PY) -m pip install $(PIP_FLAGS) $(TORCH_INDEX_ARGS) -c $(CONSTRAINTS) -e ".[dev]" $(PIP_QUIET_FILTER)
	@touch $@

install: $(STAMP)

sysdeps:
	@missing=""; \
	for p in $(SYSDEPS); do dpkg -s "$$p" >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "error: missing system packages:$$missing (no apt-get here: install them yourself)" >&2; exit 1; fi; \
	sudo=""; \
	if [ "$$(id -u)" != 0 ]; then \
	  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
	  else echo "error: need root or sudo to install:$$missing" >&2; exit 1; fi; \
	fi; \
	echo "Installing Debian packages:$$missing"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing

lab: install
	@$(MAKE) --no-print-directory sysdeps || echo "warning: Export (PDF/SVG/PNG) needs Chromium and fonts-liberation; see README." >&2
	$(VENV)/bin/jupyter lab notebooks/01_quickstart.ipynb $(LAB_ROOT_FLAG) $(LAB_ARGS)

# One app, no code: Voila runs notebooks/apps/$(APP).ipynb in a kernel of its own for each visitor.
# Only this machine can open it (APP_IP=127.0.0.1); sharing it (APP_IP=0.0.0.0 VOILA_ARGS=--token): README, "App mode".
app: app-name install
	@$(MAKE) --no-print-directory sysdeps || echo "warning: Export (PDF/SVG/PNG) needs Chromium and fonts-liberation; see README." >&2
	$(VENV)/bin/voila notebooks/apps/$(APP).ipynb --Voila.ip=$(APP_IP) --strip_sources=True $(VOILA_ARGS)

app-name:  # before installing: a misspelt APP fails at once
	@if [ ! -f notebooks/apps/$(APP).ipynb ]; then echo "error: no app '$(APP)'; choose one of: $(APPS)" >&2; exit 2; fi

# Real videos the video model never trains on (its verdict and the collapse test): OpenCV's sample recordings from
# Debian's opencv-doc (Apache-2.0), fetched with apt-get download and unpacked into $(HELDOUT); never committed.
HELDOUT ?= .cache/heldout
HELDOUT_FILES := examples/data/vtest.avi examples/data/tree.avi opencv4/html/box.mp4.gz opencv4/html/cup.mp4.gz
heldout-media:
	@if [ -f $(HELDOUT)/vtest.avi ] && [ -f $(HELDOUT)/tree.avi ] && [ -f $(HELDOUT)/box.mp4 ] && [ -f $(HELDOUT)/cup.mp4 ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "error: the held-out videos come from Debian's opencv-doc; no apt-get here" >&2; exit 1; fi; \
	tmp=$$(mktemp -d); chmod 755 $$tmp; echo "Fetching the held-out videos (Debian opencv-doc, 96 MB download) into $(HELDOUT)"; \
	( cd $$tmp && apt-get download -q opencv-doc >/dev/null ) || { rm -rf $$tmp; echo "error: apt-get download opencv-doc failed (run apt-get update?)" >&2; exit 1; }; \
	dpkg-deb -x $$tmp/opencv-doc_*.deb $$tmp/x && mkdir -p $(HELDOUT) && \
	for f in $(HELDOUT_FILES); do cp $$tmp/x/usr/share/doc/opencv-doc/$$f $(HELDOUT)/; done && \
	gunzip -f $(HELDOUT)/box.mp4.gz $(HELDOUT)/cup.mp4.gz; rc=$$?; rm -rf $$tmp; exit $$rc

# pytest exit status 5 means "no tests collected": never let that pass quietly.
define run_pytest
	@mkdir -p "$(dir $(PYTEST_EXIT_FILE))"
	@rc=0; HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS) || rc=$$?; \
	echo "$$rc" > "$(PYTEST_EXIT_FILE)"; \
	if [ "$$rc" = 5 ]; then \
	  echo "error: pytest collected no tests (exit status 5). Check PYTEST_ARGS and the tests/ folder." >&2; fi; \
	exit "$$rc"
endef

test: install sysdeps heldout-media
	$(run_pytest)

pytest:
	$(run_pytest)

bench: install
	@shopt -s nullglob; files=(bench/*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "no bench/*.py scripts yet"; exit 0; fi; \
	for f in "$${files[@]}"; do echo "== $$f"; $(PY) "$$f"; done

# Mutation testing of one core module (minutes; not part of `make test`). Results stay in .mutants/<module>/.
MODULE ?=
mutate: install
	@if [ -z "$(MODULE)" ]; then $(PY) tools/mutate.py --list; echo "usage: make mutate MODULE=<one of the above>" >&2; exit 2; fi
	OMP_NUM_THREADS=1 $(PY) tools/mutate.py $(MODULE)

# The two stages recorded in data/models/mini-mae/README.md (about 80 minutes on 2 CPU cores;
# add DEVICE=cuda to train on a GPU).
DEVICE ?= cpu
train-mini-mae: install
	$(PY) -m explorer.training.train_mini_mae --steps 3000 --lr 0.0015 --seed 0 --device $(DEVICE) --out data/models/mini-mae
	$(PY) -m explorer.training.train_mini_mae --init data/models/mini-mae --steps 2000 --lr 0.0005 --seed 1 --device $(DEVICE) --out data/models/mini-mae

# Recorded in data/models/mini-fusion/README.md (about 25 minutes on one CPU core).
train-mini-fusion: install
	$(PY) -m explorer.training.train_mini_fusion --steps 4000 --batch 64 --lr 0.001 --seed 0 --aux 1.0 --image-layers 0 --image-layers-after 2 --text-layers 0 --grid-conv --threads 1 --device $(DEVICE) --out data/models/mini-fusion
	$(PY) -m explorer.training.fusion_card data/models/mini-fusion

train-mini-video-mae: install heldout-media
	$(PY) -m explorer.training.train_mini_video_mae --steps 6000 --batch 16 --lr 0.001 --photo-clips 8000 --generated-clips 2000 --seed 0 --threads 1 --device $(DEVICE) --out data/models/mini-video-mae
	$(PY) -m explorer.training.train_mini_video_mae --init data/models/mini-video-mae --steps 3000 --batch 16 --lr 0.0005 --photo-clips 8000 --generated-clips 2000 --seed 1 --threads 1 --device $(DEVICE) --out data/models/mini-video-mae
	$(PY) -m explorer.training.train_mini_video_mae --init data/models/mini-video-mae --steps 3000 --batch 16 --lr 0.0005 --photo-clips 8000 --generated-clips 2000 --seed 2 --threads 2 --device $(DEVICE) --out data/models/mini-video-mae
	$(PY) -m explorer.training.train_mini_video_mae --init data/models/mini-video-mae --steps 3000 --batch 16 --lr 0.0005 --photo-clips 8000 --generated-clips 2000 --seed 3 --threads 2 --device $(DEVICE) --out data/models/mini-video-mae
	$(PY) -m explorer.training.video_card data/models/mini-video-mae

train-mini-rgbd-mae: install
	$(PY) -m explorer.training.train_mini_multimae --task rgbd --steps 5000 --batch 32 --samples 6000 --seed 0 --threads 1 --out data/models/mini-rgbd-mae
	$(PY) -m explorer.training.multimodal_card data/models/mini-rgbd-mae --samples 200

train-mini-av-mae: install
	$(PY) -m explorer.training.train_mini_multimae --task audio-visual --steps 3500 --batch 32 --samples 4000 --seed 0 --threads 1 --out data/models/mini-av-mae
	$(PY) -m explorer.training.multimodal_card data/models/mini-av-mae --samples 200

train-mini-uniformer: install
	$(PY) -m explorer.training.train_mini_uniformer --steps 4000 --batch 64 --samples 24000 --photo-share 0.3 --lr 0.002 --seed 0 --threads 1 --out data/models/mini-uniformer

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts build dist *.egg-info
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
