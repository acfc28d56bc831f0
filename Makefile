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

.PHONY: setup sysdeps demo test test-fast bench bench-gpu clean

setup: $(STAMP)

# System libraries: EGL + Mesa for MuJoCo's offscreen camera, libusb for pyrealsense2, hidapi for the SpaceMouse.
sysdeps:
	@missing=""; \
	ldconfig -p | grep -q 'libEGL.so.1 ' || missing="$$missing libegl1 libgl1-mesa-dri"; \
	ldconfig -p | grep -q 'libusb-1.0.so.0 ' || missing="$$missing libusb-1.0-0"; \
	ldconfig -p | grep -q 'libhidapi-hidraw.so.0 ' || missing="$$missing libhidapi-hidraw0"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing system packages; please run: sudo apt-get install$$missing"; exit 1; fi; \
	fi

$(STAMP): requirements.txt requirements-ros.txt constraints.txt setup.py
	@$(MAKE) --no-print-directory sysdeps
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and alone: the pinned CPU build, so nothing later pulls the CUDA stack.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt $(ROS_REQS) -c constraints.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The ROS 2 graph on the embedded franky-sim world: BAC and full precision side by side.
demo: $(STAMP)
	MUJOCO_GL=egl $(VENV)/bin/bac demo --episodes 5

bench: $(STAMP)
	$(VENV)/bin/bac bench --config cpu --backend eager,onnx --profile

# On a machine with a CUDA GPU (its own venv; never part of make test): tools/gpu_bench.sh
bench-gpu:
	tools/gpu_bench.sh

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf build install log .pytest_cache
