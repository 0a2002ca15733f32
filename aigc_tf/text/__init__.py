"""GPT-2 text generation with keras-hub, one file per step of its life:

- `tokenizer`: GPT-2's real BPE tokenizer, offline;
- `data`: text corpora, tokenized and packed into training windows;
- `models`: the keras-hub `GPT2CausalLM`, built small or loaded from a preset or a run (`load_text_run`);
- `train`: fine-tuning with `compile` / `fit`, `train_text(config, run_dir)`;
- `sample`: greedy, top-k, top-p, beam and random decoding, `generate(causal_lm, prompts, sampler)`;
- `kv_decoder`: a KV-cached decoding loop, for speed and for the served graph;
- `evaluate`: perplexity on held-out text, `evaluate_text(run_dir, corpus)`;
- `export`: string-in / string-out generation as a SavedModel for TF Serving, `export_text(run_dir, model_dir)`.
"""
