# trapstack — the two commands a new user needs: `make demo` and `make test`.
# Everything else (venv, ffmpeg, demo data) is set up on demand.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA ?=
WORKERS ?= 2
DEMO := data/demo
export PYTHONUNBUFFERED := 1
# Quiet TensorFlow's C++ start-up banner; errors still show.
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help demo run predict predict-demo test test-fast lint tools venv bench clean-demo

help:
	@echo "make demo              install, build the demo data, run the whole chain, print scores"
	@echo "make run DATA=dir      run the chain on a data folder in the contract layout"
	@echo "                       (WORKERS=N runs N jobs at once; or set TRAPSTACK_DATA)"
	@echo "make predict VIDEOS=dir [STACK=data/demo] [OUT=dir] [METADATA=csv] [DEPLOYMENTS=csv]"
	@echo "                       predict new videos with a trained stack (a data folder or an"
	@echo "                       exported stack.tar.gz): predictions.csv + a Camtrap DP package"
	@echo "make predict-demo      after make demo: the demo's 80 test clips as a folder of new"
	@echo "                       footage through r80; prints the largest difference to the"
	@echo "                       demo's submission"
	@echo "make test              lint, then the whole test suite (10-13 min on 2 cores)"
	@echo "make test-fast         the unit tests only (under a minute): no chain, no video"
	@echo "make lint              ruff (pyproject.toml) and the house rules (.ci/house_rules.py)"
	@echo "make bench             the speed benchmarks (bench/), on the demo data"

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-ray.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

# ffmpeg (r00 encodes the demo clips, r70 draws on videos) and ffprobe (the tests check the
# in-process probe against it) come from Debian's package; the imageio-ffmpeg wheel has no
# ffprobe. r10 itself reads videos in-process (PyAV, OpenCV).
tools:
	@if command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "installing ffmpeg (Debian package)"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq ffmpeg >/dev/null; \
	else echo "ffmpeg/ffprobe not found: install ffmpeg with your package manager"; exit 1; fi
	@ffprobe -version >/dev/null || { echo "ffprobe does not run"; exit 1; }

# The chain's job log goes to the screen; the score table is printed again at the end
# (r60 answers "up to date" and prints it), then where the outputs are.
demo: venv tools
	$(PY) r00_make_demo_data.py
	$(PY) run_all.py --data $(DEMO) --workers $(WORKERS)
	@$(PY) r60_ensemble.py --data $(DEMO) 2>/dev/null
	@echo "report: $(DEMO)/reports/report.html"

run: venv tools
	@test -n "$(DATA)" || test -n "$$TRAPSTACK_DATA" || { echo "usage: make run DATA=dir"; exit 2; }
	$(PY) run_all.py $(if $(DATA),--data $(DATA)) --workers $(WORKERS)
	@$(PY) r60_ensemble.py $(if $(DATA),--data $(DATA)) 2>/dev/null

STACK ?= $(DEMO)
predict: venv tools
	@test -n "$(VIDEOS)" || { echo "usage: make predict VIDEOS=dir [STACK=data/demo|stack.tar.gz] [OUT=dir] [METADATA=csv] [DEPLOYMENTS=csv]"; exit 2; }
	$(PY) r80_predict.py --videos "$(VIDEOS)" --stack "$(STACK)" --workers $(WORKERS) \
		$(if $(OUT),--out "$(OUT)") $(if $(METADATA),--metadata "$(METADATA)") \
		$(if $(DEPLOYMENTS),--deployments "$(DEPLOYMENTS)")

# The demo's test clips as a card of new footage would come: a folder of clips, no site
# table (r80 finds each clip's camera among the stack's by its background).
DEMO_CLIPS := data/demo_test_clips
predict-demo: venv tools
	@test -f $(DEMO)/submissions/submission.csv || { echo "run make demo first"; exit 2; }
	rm -rf $(DEMO_CLIPS) && mkdir -p $(DEMO_CLIPS)
	tail -n +2 $(DEMO)/input/submission_format.csv | cut -d, -f1 | while read -r name; do \
		ln -s "$(CURDIR)/$(DEMO)/input/videos/$$name" "$(DEMO_CLIPS)/$$name"; done
	$(PY) r80_predict.py --videos $(DEMO_CLIPS) --stack $(DEMO) --out data/predict/demo_test_clips \
		--workers $(WORKERS)
	@$(PY) -c "import pandas as pd; p = pd.read_csv('data/predict/demo_test_clips/predictions.csv'); \
		s = pd.read_csv('$(DEMO)/submissions/submission.csv').set_index('filename').loc[p['filename']]; \
		print(f'{len(p)} clips; largest difference to submission.csv: ' \
		      f'{abs(p[s.columns].to_numpy() - s.to_numpy()).max():.1e}')"

lint: venv
	$(PY) -m ruff check .
	$(PY) .ci/house_rules.py

# two test processes (pytest-xdist), each taking whole modules in tests/conftest.py's order
test: venv tools lint
	$(PY) -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder tests

test-fast: venv
	$(PY) -m pytest -q -m "not slow" tests

bench: venv tools
	@test -f $(DEMO)/input/train_labels.csv || $(PY) r00_make_demo_data.py
	$(PY) bench/bench_features.py --data $(DEMO)
	$(PY) bench/bench_parallel.py --data $(DEMO)

clean-demo:
	rm -rf $(DEMO)
