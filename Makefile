# gaf — the two commands: `make demo` and `make test`. Both create .venv/ first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
GAF    := $(VENV)/bin/gaf
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-seeds bench bench-ablation bench-peer clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints-dev.txt -e '.[test,video,flow]'
	touch $(STAMP)

demo: $(STAMP)
	$(GAF) demo

test: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
		&& echo "installed Debian's chromium (the report is rendered in it by a test)"; } \
		|| echo "no chromium: the report's browser test will skip"
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q -p no:cacheprovider -n auto --dist worksteal

# Every test that asserts learning or a mechanism (marker `learning`), under training seeds 0, 1 and 2 (not in CI:
# about three times those tests' share of `make test`). A learning test must not need a lucky seed.
test-seeds: $(STAMP)
	@status=0; for seed in 0 1 2; do echo "== training seed $$seed"; \
		GAF_TRAIN_SEED=$$seed OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q -p no:cacheprovider -n auto --dist worksteal \
			-m learning || status=1; done; exit $$status

bench: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(PY) bench/eval.py
	OMP_WAIT_POLICY=PASSIVE $(PY) bench/infer.py
	OMP_WAIT_POLICY=PASSIVE $(PY) bench/extract.py
	OMP_WAIT_POLICY=PASSIVE $(PY) bench/train.py
	$(PY) bench/norm.py

bench-ablation: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(PY) bench/ablation.py

bench-peer: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(PY) bench/peer.py

clean:
	rm -rf $(VENV) work_dirs demo_data
