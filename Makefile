# Two commands do everything on a fresh machine with Python >= 3.11: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# A sourced ROS 2 install (ROS_DISTRO set) provides rclpy and the messages: use it, don't shadow it.
ifdef ROS_DISTRO
VENV_FLAGS := --system-site-packages
ROS_REQS :=
else
VENV_FLAGS :=
ROS_REQS := -r requirements-ros.txt
endif

.PHONY: setup demo test test-fast bench schedules clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-ros.txt constraints.txt setup.py
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and alone: the pinned CPU build, so nothing later pulls the CUDA stack.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt $(ROS_REQS) -c constraints.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Until the closed-loop demo exists (issue #4), `make demo` benchmarks BAC on the shipped cpu config.
demo: $(STAMP)
	$(VENV)/bin/bac bench --config cpu --profile

bench: $(STAMP)
	$(VENV)/bin/bac bench --config paper --observations 4 --repeats 2

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf build install log .pytest_cache
