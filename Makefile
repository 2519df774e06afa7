# papers30. The two commands (see README.md):
#   make book   build the whole site (creates .venv, installs pinned deps, executes every chapter)
#   make test   run every test: package unit tests, a clean build of the book, checks of the built site
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := .binder/constraints.txt
STAMP := $(VENV)/.papers30-installed
BUILD := _build
JB := $(BIN)/jupyter-book build . -n -W --keep-going

.PHONY: book test pdf install clean reproduce notebooks bench

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(LOCK) -e ".[book,test]"
	@touch $@

# Execution is cached in _build/.jupyter_cache. book/_ext/execute.py runs,
# two at a time, the chapters whose source changed or whose package code
# changed (the papers30 modules each chapter imports, directly or not, and its
# entries of papers.toml); Sphinx then reads every chapter from the cache.
book: $(STAMP)
	$(BIN)/python book/_ext/execute.py --jobs 2
	$(JB)
	@echo "Site built: $(CURDIR)/$(BUILD)/html/index.html"

# The whole book as one PDF: the single-page build, printed by the system
# Chromium with diagrams and equations rendered (needs /usr/bin/chromium).
pdf: book
	$(JB) --builder singlehtml
	$(BIN)/python book/_ext/pdf.py $(BUILD)/singlehtml $(BUILD)/pdf/papers30.pdf

# From a clean _build: every chapter executes, the PDF is printed, then pytest
# runs the unit tests and the checks of the built site (book, links, browser, PDF).
test: $(STAMP)
	rm -rf $(BUILD)
	$(BIN)/python book/_ext/execute.py --jobs 2
	$(JB) --all
	$(JB) --builder singlehtml
	$(BIN)/python book/_ext/pdf.py $(BUILD)/singlehtml $(BUILD)/pdf/papers30.pdf
	$(BIN)/python -m pytest --durations=30

# The reader notebooks (notebooks/NN_slug.ipynb) that the Colab, Binder and
# download buttons open: each chapter without MyST syntax, with this build's
# glued values. Committed; tests/test_reader.py checks they are in sync.
notebooks: book
	$(BIN)/python book/_ext/reader.py

# Kernel timings against torch (book/results/bench.json, shown on the
# "Kernel benchmarks" page). Run on an idle machine.
bench: $(STAMP)
	$(BIN)/python tools/bench.py

# A chapter's recorded larger run (book/results/chNN.json): on a GPU at the
# paper's scale, otherwise a long CPU run. Usage: make reproduce CH=10
reproduce: $(STAMP)
	@test -n "$(CH)" || { echo "usage: make reproduce CH=NN"; exit 2; }
	$(BIN)/python tools/reproduce.py $(CH)

clean:
	rm -rf $(BUILD)
