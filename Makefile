# edgekit developer entry points. Every target creates .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgekit-installed
OUT    ?= runs/demo

.PHONY: demo test test-all bench lint venv clean kws-deps bench-deps fuzz reliability

venv: $(STAMP)

$(STAMP): setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgekit demo --out $(OUT)

# pytest exits 5 when it collects no test: make treats every non-zero exit as failure.
# The suite runs in TEST_WORKERS pytest-xdist workers (default: one per core, at most 4; each
# loads TensorFlow). --dist loadfile keeps a file's tests, and its module fixtures, in one worker;
# the longest files start first (tests/conftest.py, LONGEST_FIRST; --no-loadscope-reorder keeps
# that order). TEST_WORKERS=0 runs it in this process, in order.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, os.cpu_count() or 1))")
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)
test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q $(XDIST)

test-all: $(STAMP)
	$(PY) -m pytest -q $(XDIST)

# The long fuzz run of the parsers that read users' files (tests/fuzz/run_fuzz.py): 100,000
# inputs over .tflite (inspect and device_bench), recipes, .npz/.npy and image folders; prints
# one row per target and rewrites the fuzz section of RELIABILITY.md. FUZZ_ARGS adds options,
# e.g. `make fuzz FUZZ_ARGS="--seed 3 --minutes 20"`. Exit 1 when anything crashed.
FUZZ_TOTAL ?= 100000
fuzz: $(STAMP)
	$(PY) tests/fuzz/run_fuzz.py --total $(FUZZ_TOTAL) --out RELIABILITY.md $(FUZZ_ARGS)

# The reliability table of RELIABILITY.md (tests/reliability/reliability_table.py): runs every
# test marked reliability(CATEGORY) (bad input, full disk, interrupts, boards that fail, no code
# from data), slow ones included, and rewrites its section. RELIABILITY_ARGS adds options, e.g.
# `make reliability RELIABILITY_ARGS="--fast"`. Exit 1 when a case failed.
reliability: $(STAMP)
	$(PY) tests/reliability/reliability_table.py --out RELIABILITY.md $(RELIABILITY_ARGS)

# Each script rewrites its own section of BENCHMARKS.md (bench/sections.py); one can run alone,
# e.g. `make bench BENCH=arch_matrix`. The whole set takes about eight hours on 2 cores.
BENCH ?= run_benchmarks bench_method calibration_cost selective_quant distill_digits \
         arm_instructions arch_matrix cli_startup kws channel_rounding channel_coverage \
         channel_prune channel_search ray_sweep
bench: $(STAMP) bench-deps
	@set -e; for b in $(BENCH); do echo "== bench/$$b.py"; $(PY) bench/$$b.py --out BENCHMARKS.md; done

# The keyword-spotting set (`data: kws`) is spoken by espeak-ng, a Debian/Ubuntu package. The
# tests install it themselves; `edgekit data kws` and `data: kws` need it installed.
kws-deps:
	@command -v espeak-ng >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -q espeak-ng || { apt-get update -q && apt-get install -y -q espeak-ng; }; \
	  else sudo apt-get install -y -q espeak-ng; fi; }

# What the benchmarks need beyond the venv: espeak-ng (kws) and qemu-user + the ARM sysroot
# (instruction counts on an emulated Cortex-A72); `make bench` on a fresh machine installs them.
bench-deps: $(STAMP) kws-deps
	$(PY) -m device_bench.arm_sysroot --install-host-tools

lint: $(STAMP)
	$(VENV)/bin/ruff check edgekit converters device_bench models tests bench

clean:
	rm -rf $(VENV) runs build *.egg-info
