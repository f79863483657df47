# The two commands:   make book   (set up, execute every chapter at the quick profile, render HTML)
#                     make test   (set up, unit tests + nbval over the chapters + the book renders)
# Each sets up its own virtual environment in .venv from the pins in pyproject.toml.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.robgen-installed
export TQDM_DISABLE ?= 1

.PHONY: book test setup bench notebooks edition-mnist glance clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[book,test]"
	# chapter 6's independent attacks; --no-deps: torchattacks pins an old requests, and must not move torch
	$(PY) -m pip install --quiet --no-deps torchattacks==3.5.1
	touch $@

# Both first execute the chapters JOBS at a time (one thread each on 2 cores), which fills the
# artifact cache. The book is rendered from those executed notebooks (Jupyter Book does not
# execute them again); nbval executes them once more, reading every result back.
JOBS ?= 2

book: $(STAMP)
	$(PY) -m robgen_lib.book.execute --jobs $(JOBS) --out _build/executed
	$(PY) -m robgen_lib.book.render _build/executed
	@echo "The book is in _build/html/index.html"

test: $(STAMP)
	$(PY) -m robgen_lib.book.execute --jobs $(JOBS)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(JOBS) --dist loadfile --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg --durations=20 chapters tests

# The MNIST edition: every chapter at the mnist profile (real 28x28 images, offline), written to
# editions/mnist with its provenance; resumable (an interrupted run's models and evaluations are
# in the cache). Then the results-at-a-glance table is regenerated from the executed notebooks.
edition-mnist: $(STAMP)
	$(PY) -m robgen_lib.book.execute --jobs $(JOBS) --out editions/mnist --edition "MNIST edition" -p profile mnist
	$(PY) -m robgen_lib.book.glance

glance: $(STAMP)
	$(PY) -m robgen_lib.book.glance

# Development only: chapter times, and the speed of the book's PGD against torchattacks'.
bench: $(STAMP)
	$(PY) benchmarks/bench_chapters.py

# Re-execute the committed notebooks in place at their default profile.
notebooks: $(STAMP)
	for nb in chapters/*.ipynb; do $(VENV)/bin/jupyter execute --inplace --timeout=3600 $$nb || exit 1; done

clean:
	rm -rf _build
