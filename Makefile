# The two commands of the README's quick start, and the pieces they are made of.
#   make demo   set up .venv, fetch the offline data, then `aigc-tf demo`: train, evaluate and export the GAN, GPT-2
#               and VAE, check the exports, print each stage's time
#   make test   set up .venv, fetch the offline data, run the test suite
#   make results  after make demo: the conditional GAN, the PEFT runs (LoRA, prefix, adapters) on the shipped base and
#                 adversarial-robustness runs, then results/ (the README's tables)
#   make notebooks         set up, fetch the data, install JupyterLab if missing, open the tutorials
#   make strip-notebooks   remove outputs and execution counts from the notebooks before committing
#   make check-docs        every figure in README.md and docs/*.md against the artifact it names (no set-up needed)
#   make render-notebooks  execute the notebooks at full size and write notebooks/rendered/ (Markdown with figures)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TEXT   ?= runs/gpt2
VAE    ?= runs/vae
JUPYTER_FLAGS ?=  # e.g. --allow-root in a container, --no-browser --port 8888 on a remote machine

.PHONY: demo test setup data bench results results-text clean help notebooks strip-notebooks pretrain check-docs

help:
	@echo "make demo   - set up, fetch offline data, train/evaluate/export the GAN, GPT-2 and VAE, check the exports (<10 min on 2 cores)"
	@echo "make test   - set up, fetch offline data, run the tests"
	@echo "make bench  - GAN step, GPT-2 decoding and training against the machine's GEMM and bandwidth (<15 min)"
	@echo "make results - after make demo: conditional GAN, Moby-Dick fine-tuning, results/ (the README's tables)"
	@echo "make pretrain - pretrain the shipped base GPT-2 (~80 min on 2 cores, resumable) and ship it with its model card"
	@echo "make notebooks - open the tutorials in JupyterLab (installs it into .venv on first use)"
	@echo "make strip-notebooks - strip outputs from notebooks/*.ipynb before committing"
	@echo "make check-docs - check every figure in README.md and docs/*.md against its artifact (<1 s)"

$(BIN)/aigc-tf: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

setup: $(BIN)/aigc-tf

data: setup
	$(BIN)/aigc-tf data fetch mnist sotu shakespeare moby_dick

# make's start time, taken when the Makefile is read: the demo reports set-up and data fetch as its first stage.
STARTED := $(shell date +%s)
DEMO_FLAGS ?=  # e.g. --gan-epochs 300 --text-steps 2000 for longer runs (aigc-tf demo --help)

# One process runs every stage (aigc-tf demo prints each as the aigc-tf command it is) and prints the stage times.
demo: data
	$(BIN)/aigc-tf demo --started-at $(STARTED) $(DEMO_FLAGS)

# pytest runs in a network namespace of its own, loopback only, where the platform allows (tests/netguard/isolate.py:
# it says so in one line when it does not); set-up and the data fetch above run outside it, with the network.
# Two pytest-xdist workers: most tests wait on one core (tracing, compiling, a kernel or server starting), so two
# share 2 cores well (docs/tests.md has the timings); TEST_WORKERS=0 runs them in this one process.
PYTEST_ARGS ?=  # e.g. tests/system/test_network_guard.py tests/serving/test_serving.py -k grpc; empty runs the whole suite
TEST_WORKERS ?= 2
test: data
	$(BIN)/python tests/netguard/isolate.py -m pytest -q --durations=10 -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The base GPT-2 the text lessons fine-tune: hours of CPU, so it runs in the background and resumes when re-run.
# Run it as `nohup make pretrain > pretrain.log 2>&1 &`; run it again after a kill: it picks up at the last
# finished epoch.
pretrain: setup
	$(BIN)/aigc-tf data fetch sotu shakespeare
	$(BIN)/aigc-tf text pretrain --out runs/pretrain
	$(BIN)/aigc-tf text ship-base --run runs/pretrain

bench: data
	$(BIN)/python bench/run.py

# The PEFT comparison fine-tunes the shipped base on Moby-Dick at the demo's budget (200 steps), each method at its
# default learning rate (TextConfig.peak_learning_rate, chosen by bench/text_peft_search.py on a selection split);
# the demo's own run (runs/gpt2, full fine-tuning) is its first row.
FINETUNE = --corpus moby_dick --steps 200 --steps-per-epoch 100
PROMPTS = --prompt "It is a beautiful day" --prompt "The whale" --json
results: data results-text
	$(BIN)/aigc-tf gan train --out runs/cgan --condition digit
	$(BIN)/aigc-tf gan eval --run runs/cgan > /dev/null
	$(BIN)/aigc-tf vae eval --run $(VAE) > /dev/null
	$(BIN)/aigc-tf robust --out runs/robust --gan-run runs/gan
	$(BIN)/python results/collect.py

# The text half alone (after make demo): samples of the fine-tuned model, the PEFT runs, results/ text sections.
results-text: data
	$(BIN)/aigc-tf text generate --run $(TEXT) $(PROMPTS) > results/samples_greedy.json
	$(BIN)/aigc-tf text generate --run $(TEXT) $(PROMPTS) --sampler top_p --top-p 0.9 --temperature 0.8 \
		> results/samples_top_p.json
	$(BIN)/aigc-tf text generate --run $(TEXT) $(PROMPTS) --no-repeat-ngram 3 > results/samples_no_repeat.json
	$(BIN)/aigc-tf text generate --run $(TEXT) $(PROMPTS) --repetition-penalty 1.2 > results/samples_penalty.json
	$(BIN)/aigc-tf text train --out runs/moby_lora $(FINETUNE) --peft lora
	$(BIN)/aigc-tf text train --out runs/moby_prefix $(FINETUNE) --peft prefix
	$(BIN)/aigc-tf text train --out runs/moby_adapter $(FINETUNE) --peft adapter
	$(BIN)/python results/collect.py --only text

notebooks: data
	@$(BIN)/python -c "import jupyterlab, ipywidgets" 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[notebooks]"
	$(BIN)/jupyter lab notebooks/ $(JUPYTER_FLAGS)

strip-notebooks: setup
	$(BIN)/python notebooks/strip_outputs.py notebooks/*.ipynb

# Standard library only, so it runs before set-up; tests/test_docs.py runs the same check in make test.
check-docs:
	$(PYTHON) bench/check_docs.py

# Execute every notebook at its default (full) size in a fresh kernel and write notebooks/rendered/<name>.md with its
# figures, the copies GitHub shows (about an hour and a half on 2 cores); the committed .ipynb stay stripped.
# One notebook: make render-notebooks NOTEBOOKS=notebooks/02_vae_and_conditional_gan.ipynb
.PHONY: render-notebooks
render-notebooks: data
	$(BIN)/python notebooks/render.py $(NOTEBOOKS)

clean:
	rm -rf $(VENV) runs .pytest_cache
