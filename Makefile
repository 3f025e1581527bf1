# Quick start targets: each one creates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[toxicity,profanity,report,onnx,dev]"
	touch $(STAMP)

# The main job on the bundled sample, offline: alt-profanity-check stands in
# for Detoxify, whose weights are downloaded on first use.
demo: $(STAMP)
	$(BIN)/annotate run --runner DirectRunner \
		--scorers toxicity_profanity,pii,code_style --overwrite \
		data/sample.jsonl out/sample

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) out .pytest_cache
