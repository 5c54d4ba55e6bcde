# imgproc: `make demo` and `make test` do all the set-up they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
N      ?= 2
QUEUES ?= bg-removal,face-crop,image-processing
PORT   ?= 8000
EXTRAS ?= cpu,dev

.PHONY: install models demo lint docs test soak run-api run-workers bench gpu-check images images-test clean

# The virtualenv is rebuilt when setup.cfg changes.
$(BIN)/.installed: setup.cfg setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

install: $(BIN)/.installed

models: install
	$(BIN)/imgproc models fetch

# `make demo SERVE=1` keeps the stack up afterwards (the web page, `imgproc submit`) until Ctrl-C.
demo: models
	$(BIN)/imgproc demo $(if $(SERVE),--serve)

# Ruff (pyflakes, pycodestyle at 110 columns, import order, bugbear, pyupgrade; format), the
# package's floors: no import circles, no imports upward (tests/layout.py), and the documentation
# site built strictly into build/docs/ (a broken link or anchor, or a settings table that is not
# Settings' own, fails it). NO_MKDOCS_2_WARNING: Material's banner about MkDocs 2.0, not a warning.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m tests.layout
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The documentation site (docs/, mkdocs.yml) at http://127.0.0.1:$(DOCS_PORT)/, rebuilt on each change.
DOCS_PORT ?= 8001
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict -a 127.0.0.1:$(DOCS_PORT)

test: models
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The load and memory fault test at a larger scale (SOAK_JOBS light jobs), with its figures, the
# three-host test in network namespaces (tests/faults/test_many_hosts.py), then the images and the
# compose stack (make images, make images-test).
SOAK_JOBS ?= 10000
soak: models
	IMGPROC_SOAK_JOBS=$(SOAK_JOBS) $(BIN)/python -m pytest -s -o timeout=3600 tests/faults/test_load.py -k load
	IMGPROC_SOAK=1 $(BIN)/python -m pytest -s tests/faults/test_many_hosts.py
	$(MAKE) images
	$(MAKE) images-test

# Measures imgproc against the model's raw inference; prints a table, writes bench/results.json
# (about 4 minutes on 2 cores). BENCH_ARGS=--quick for a run of under a minute.
bench: models
	$(BIN)/pip install -q -e '.[$(EXTRAS),bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# On an NVIDIA GPU: provider, ISNet's floor at batch 1/4/8/16 in fp32 and fp16, masks against CPU fp32, the
# pipeline with 1-4 GPU workers; writes bench/results-gpu.json (under 8 minutes). Without a GPU it says so.
gpu-check: models
	$(BIN)/python -m bench.gpu_check $(GPU_CHECK_ARGS)

# The images, from the Debian archive and PyPI alone (no registry): stand-ins for the bases that are
# missing, then imgproc:cpu and imgproc:gpu (README, Docker). IMAGES=cpu for one.
IMAGES ?= cpu gpu
images:
	BASES="$(BASES)" deploy/images/build.sh $(IMAGES)

# The images and docker-compose.yml as operators run them (tests/containers): podman and docker-compose.
# IMAGES_TESTS=tests/containers/test_image.py: the CPU image alone, one job (what CI runs).
IMAGES_TESTS ?= tests/containers
images-test: install
	IMGPROC_IMAGES_TEST=1 $(BIN)/python -m pytest -o timeout=1800 $(IMAGES_TESTS) $(PYTEST_ARGS)

run-api: install
	$(BIN)/flask --app api run --port $(PORT)

run-workers: install
	$(BIN)/imgproc workers $(N) --queues $(QUEUES)

clean:
	rm -rf var out .pytest_cache
