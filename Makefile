# The kit's commands. `make` = install, data, handouts, then grade the bundled solutions (the kit proving
# itself). Every target is idempotent: a second run only redoes what changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NB ?=
SUBMISSIONS ?=
DEVICE ?= auto
WORKERS ?= 1

.PHONY: all install data priors handouts check grade gradescope report test test-fast bench notebooks clean-data help

all: install data handouts report

help:
	@echo "make                 install, data, handouts, grade the bundled solutions (the main job)"
	@echo "make install         create .venv with pinned packages (torch 2.13.0 CPU unless a 2.13 build is present)"
	@echo "make data            build the procedural datasets and train the feature networks (data/)"
	@echo "make priors          train the two 2D diffusion priors 05_sds distills (GEN3D_MODE=small: ~20 min on 2 cores)"
	@echo "make handouts        regenerate assignments/ from solutions/ with nbgrader, then lint"
	@echo "make check NB=path   a student's quick check: the public tests of one notebook"
	@echo "make grade SUBMISSIONS=dir/ [WORKERS=4]   grade a class folder into reports/gradebook.csv (+ HTML reports)"
	@echo "make gradescope      one Gradescope autograder bundle per topic in build/gradescope/"
	@echo "make test            the kit's whole test suite (what CI runs)"
	@echo "make bench           benchmarks (timings, memory)"

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

data: install
	$(PY) -m gen3d.data
	$(PY) -m gen3d.features train

priors: install data  # on a CPU the two priors train side by side (one thread each)
	$(PY) -m gen3d.hw_sds priors --mode $(or $(GEN3D_MODE),small)

handouts: install
	$(PY) -m autograder handouts

check: install
	@test -n "$(NB)" || { echo "usage: make check NB=assignments/02_pigan/pigan.ipynb"; exit 2; }
	$(PY) -m autograder grade "$(NB)" --public-only --device $(DEVICE)

grade: install
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=dir/"; exit 2; }
	$(PY) -m autograder batch "$(SUBMISSIONS)" --out reports/gradebook.csv --device $(DEVICE) \
		--workers $(WORKERS) --html-dir reports/html

gradescope: install
	$(PY) -m autograder.gradescope build --out build/gradescope

report: install
	$(PY) -m autograder report --out reports/

test: install data
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install data
	$(PY) -m bench

clean-data:
	rm -rf data/*.npz data/*.json data/features data/priors
