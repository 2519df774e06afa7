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

.PHONY: book test pdf install clean

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(LOCK) -e ".[book,test]"
	@touch $@

# Execution is cached in _build/.jupyter_cache; the cache cannot see edits to
# papers30, so it is dropped whenever the package's hash changes. Chapters not
# in the cache are executed two at a time (book/_ext/execute.py) before Sphinx
# reads them from the cache.
book: $(STAMP)
	@mkdir -p $(BUILD); \
	hash=$$(cat papers30/*.py papers30/*/*.py papers30/data/*.toml | sha256sum | cut -c1-16); \
	if [ "$$(cat $(BUILD)/.papers30-hash 2>/dev/null)" != "$$hash" ]; then \
	  echo "papers30 changed: chapters will be re-executed"; rm -rf $(BUILD)/.jupyter_cache; fi; \
	echo $$hash > $(BUILD)/.papers30-hash
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
	$(BIN)/python -m pytest

clean:
	rm -rf $(BUILD)
