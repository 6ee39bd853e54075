# Two entry points do their own set-up on a fresh machine:
#   make demo   synthetic data -> train -> ONNX -> ROS node -> overlays, contact sheet
#   make test   run the whole test suite (what CI runs); prints the 15 slowest tests
#   make test-fast   everything but the `ros` and `slow` tests (about a minute on 2 cores)
# Another interpreter gets its own environment, so the default .venv stays as it is:
#   make test-fast PYTHON=python3.12        -> .venv-3.12
PYTHON ?= python3
ifeq ($(PYTHON),python3)
VENV ?= .venv
else
VENV ?= .venv-$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
endif
VPY := $(VENV)/bin/python
REQUIREMENTS := requirements/runtime.txt requirements/ros.txt requirements/dev.txt
STAMP := $(VENV)/.installed-$(shell cat $(REQUIREMENTS) | sha1sum | cut -c1-12)
ENTRY_POINTS := $(VENV)/.entry-points
DEMO_OUT ?= outputs/demo

.PHONY: setup test test-fast demo lint clean train-synthetic

setup: $(STAMP) $(ENTRY_POINTS)

# The virtual environment is rebuilt whenever a requirements file changes.
$(STAMP): $(REQUIREMENTS)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	touch $@

# The package itself, editable, so that the README's console scripts (affordance_predict,
# affordance_node, build_engine, ...) are in $(VENV)/bin and run the checkout's code.
# Requirements are already there (--no-deps); the build uses the venv's setuptools.
# --use-pep517: without it, the pip of Python 3.10's venv (23.0) takes the legacy
# `setup.py develop` path, which puts the scripts where setup.cfg tells colcon to
# (lib/affordance_grounding/), not into $(VENV)/bin.
$(ENTRY_POINTS): $(STAMP) setup.py setup.cfg
	$(VPY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
		--use-pep517 --editable .
	touch $@

test: setup
	$(VPY) -m pytest --durations=15

# The quick tier while editing: no DDS graphs, no long runs (collects without ROS installed).
test-fast: setup
	$(VPY) -m pytest -m "not ros and not slow" --durations=10

lint: setup
	$(VPY) -m pytest -m linter

# The main job end to end: synthetic data -> brief training -> ONNX -> affordance_node over
# real DDS topics -> overlays, masks, contact sheet and latency summary in $(DEMO_OUT)/ (about a
# minute from scratch on 2 idle cores, 16 when they are shared; see the README). Steps whose inputs
# did not change are reused.
demo: setup
	$(VPY) -m demo.run --out $(DEMO_OUT)

# Build the synthetic AGD20K-layout dataset, train the tiny model on it and evaluate it.
train-synthetic: setup
	$(VPY) -m training.synthetic --out data/synthetic --overwrite
	rm -rf outputs/train_synthetic_tiny
	$(VPY) -m training.train --config training/configs/synthetic_tiny.yaml epochs=4
	$(VPY) -m training.evaluate --checkpoint outputs/train_synthetic_tiny/best.pt \
		--data-root data/synthetic --out-dir outputs/eval_synthetic_tiny

clean:
	rm -rf $(VENV) build install log outputs
