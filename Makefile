# trapstack — the two commands a new user needs: `make demo` and `make test`.
# Everything else (venv, ffmpeg, demo data) is set up on demand.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA ?=
WORKERS ?= 1
export PYTHONUNBUFFERED := 1
# Quiet TensorFlow's C++ start-up banner; errors still show.
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo run chain test tools venv clean-demo help

help:
	@echo "make demo          install, build the demo data, run the whole chain, print scores"
	@echo "make run DATA=dir  run the chain on a data folder in the contract layout"
	@echo "make test          run the test suite"

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-ray.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

# ffmpeg and ffprobe come from Debian's package (the imageio-ffmpeg wheel has no ffprobe).
tools:
	@if command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "installing ffmpeg (Debian package)"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq ffmpeg >/dev/null; \
	else echo "ffmpeg/ffprobe not found: install ffmpeg with your package manager"; exit 1; fi

demo: venv tools
	$(PY) r00_make_demo_data.py
	$(PY) run_all.py --data data/demo --workers $(WORKERS)

run: venv tools
	@test -n "$(DATA)" || test -n "$$TRAPSTACK_DATA" || { echo "usage: make run DATA=dir"; exit 2; }
	$(PY) run_all.py $(if $(DATA),--data $(DATA)) --workers $(WORKERS)

test: venv tools
	$(PY) -m pytest -q tests

clean-demo:
	rm -rf data/demo
