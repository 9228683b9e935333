# The README's two commands:  `make demo`  and  `make test`.
# Both create .venv (once), install the toolkit into it, then run.
PYTHON ?= python3
VENV   ?= .venv
# DALI build: cuda12 (nvidia-dali-cuda120) or cuda13 (nvidia-dali-cuda130).
DALI   ?= cuda12
# Without an NVIDIA driver take the CPU build of torch 2.13.0; with one, pip's default (CUDA) build.
TORCH  ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 'torch>=2.4' || echo 'torch==2.13.0')
DEMO_OUT ?= demo
BIN    := $(VENV)/bin

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[$(DALI),dev]"
	touch $@

demo: setup
	$(BIN)/imagenet-tools demo --out $(DEMO_OUT)

# pytest exits 5 when it collected no test: that fails here like any other non-zero exit.
# pytest workers, one test file each at a time (a file's module fixtures are built once); the CPUs are
# shared out between them (tests/conftest.py). On 2 cores two workers ran the suite 1.5x faster than one
# process. More workers on a larger machine: `make test TEST_WORKERS=4`.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) $(DEMO_OUT)
