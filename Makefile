# devloop.telepresence: one entry point for tests, the demo and benchmarks.
# Everything installs from this repository's own files: a pinned venv in .venv and an
# ansible_collections/devloop/telepresence copy of the tree under .build/ for ansible-test.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha256sum tests/requirements-dev.txt | cut -c1-12)

export PATH := $(BIN):$(PATH)
export ANSIBLE_NOCOLOR := 1
export PY_COLORS := 0

.PHONY: venv test lint sanity units compat integration molecule pytests demo bench build clean sandbox-up sandbox-down

venv: $(STAMP)

$(STAMP): tests/requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r tests/requirements-dev.txt
	@tests/tools/install-get-pip-standin
	@rm -f $(VENV)/.installed-* && touch $@

test: venv
	@tests/tools/run-phases

lint sanity units compat integration molecule pytests: venv
	@tests/tools/run-phases $@

demo: venv
	@tests/tools/demo

bench: venv
	@bench/run

build: venv
	@rm -rf .build/dist && mkdir -p .build/dist
	$(BIN)/ansible-galaxy collection build --force --output-path .build/dist .

# Prints export lines: `eval "$(make -s sandbox-up)"` also puts this checkout's collection and the venv's Ansible first.
sandbox-up: venv
	@$(BIN)/python tests/tools/sync_copy.py "$(CURDIR)" "$(CURDIR)/.build/collections/ansible_collections/devloop/telepresence" >&2
	@tests/sandbox/up
	@echo "export PATH='$(BIN)':\"\$$PATH\" ANSIBLE_COLLECTIONS_PATH='$(CURDIR)/.build/collections'"

sandbox-down:
	@tests/sandbox/down

clean:
	rm -rf .build tests/output .ansible .sandbox
