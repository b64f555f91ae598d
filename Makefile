# Quick start:  make reference (install, render the shipped reference runs: nothing executes)
#               make book   (install, execute every notebook, build the site)
#               make test   (install if needed, check the format, run the test suite)
#               make lab    (JupyterLab on the notebooks, to change cells and run them)
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
DSCO    := $(VENV)/bin/dsco
PROFILE ?= paper
DATASET ?= digits
JOBS    ?= 2
WORKERS ?= 2

.PHONY: install reference book run site test lab clean smoke-reference

## what rendering needs and no more (no torch: a minute instead of several), and the package
$(VENV)/.book: requirements-book.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-book.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

## everything else on top (requirements.txt includes requirements-book.txt)
$(VENV)/.installed: $(VENV)/.book requirements.txt
	$(PY) -m pip install -q -r requirements.txt
	touch $@

install: $(VENV)/.installed

## render the paper reference runs shipped in reference/, offline;
## installs only requirements-book.txt (`make install` adds the rest)
reference: $(VENV)/.book
	$(DSCO) book --reference

## execute the notebooks (papermill, cached) and render them (Jupyter Book)
book: install
	$(DSCO) run --dataset $(DATASET) --profile $(PROFILE) --jobs $(JOBS)
	$(DSCO) book --dataset $(DATASET) --profile $(PROFILE)

run: install
	$(DSCO) run --dataset $(DATASET) --profile $(PROFILE) --jobs $(JOBS)

site: install
	$(DSCO) book --dataset $(DATASET) --profile $(PROFILE)

## two pytest-xdist workers, one per core; the four notebook batches run in two groups (tests/test_notebooks.py)
test: install
	$(VENV)/bin/ruff format --check --quiet dsco tests
	$(VENV)/bin/ruff check --quiet dsco tests
	$(PY) -m pytest -n $(WORKERS) --dist loadgroup

## after an intended change of a smoke number: rerun the smoke batches CI compares, ship them
smoke-reference: install
	for d in digits mnist; do \
	  $(DSCO) run --dataset $$d --profile smoke --jobs $(JOBS) --force && \
	  $(DSCO) reference ship --dataset $$d --profile smoke --results-only || exit 1; done

## JupyterLab on the notebooks (every notebook defaults to the smoke profile: "Run all" takes seconds)
lab: install
	$(VENV)/bin/jupyter lab --notebook-dir notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf build book/_build book/notebooks
