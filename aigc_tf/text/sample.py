"""Decoding strategies, side by side: greedy, top-k, top-p (nucleus), beam search and plain random sampling.

All of them are keras-hub samplers driving the same KV-cached decoding loop (`GPT2CausalLM.generate_step`); they
differ only in how the next token is picked from the logits:
- greedy: argmax; deterministic, fluent at first, then loops.
- random: sample the whole softmax(logits / T); temperature T < 1 sharpens it, T > 1 flattens it.
- top-k (Fan et al. 2018): sample among the k most likely tokens only.
- top-p (Holtzman et al. 2019, "The Curious Case of Neural Text Degeneration"): sample among the smallest set of
  tokens whose probability adds up to p.
- beam: keep the `num_beams` most likely sequences at every step; returns the best (or the best N).

Several return sequences of a stochastic sampler are drawn by repeating the prompt in the batch. keras-hub's loop runs
with its own `jit_compile="auto"` (XLA on accelerators, not on CPU) unless XLA is asked for: on CPU its XLA loop is
no faster for greedy decoding and much slower for top-p, whose sort over the 50,257-token vocabulary XLA compiles
poorly on CPU (bench/RESULTS.md, `keras_hub_xla`).

Greedy decoding takes a faster road to the same tokens: `aigc_tf.text.kv_decoder.KVCacheDecoder`, one compiled loop
over a preallocated KV cache, in fp32 or with bf16 weights (`precision`).

The caller's model is never recompiled: the samplers run on a second `GPT2CausalLM` that shares its backbone and
preprocessor (no weights are copied), so a notebook's compiled model keeps its own settings.
"""

from __future__ import annotations

from aigc_tf import AigcError
from aigc_tf.compat import build_cache
from aigc_tf.seeding import seeded

SAMPLERS = ("greedy", "top_k", "top_p", "beam", "random")


def make_sampler(name: str, temperature: float = 1.0, top_k: int = 50, top_p: float = 0.9, num_beams: int = 4,
                 seed: int | None = None, return_all_beams: bool = False):
    """A keras-hub sampler by name, its arguments validated with one-line errors; `seed` makes it repeatable."""
    import keras_hub

    samplers = keras_hub.samplers
    if name not in SAMPLERS:
        raise AigcError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    if not temperature > 0:
        raise AigcError(f"`temperature` must be > 0, got {temperature}")
    if name == "greedy":
        return samplers.GreedySampler()
    if name == "top_k":
        if top_k < 1:
            raise AigcError(f"`top_k` must be >= 1, got {top_k}")
        return samplers.TopKSampler(k=top_k, temperature=temperature, seed=seed)
    if name == "top_p":
        if not 0 < top_p <= 1:
            raise AigcError(f"`top_p` must be in (0, 1], got {top_p}")
        return samplers.TopPSampler(p=top_p, temperature=temperature, seed=seed)
    if name == "beam":
        if num_beams < 1:
            raise AigcError(f"`num_beams` must be >= 1, got {num_beams}")
        return samplers.BeamSampler(num_beams=num_beams, temperature=temperature, return_all_beams=return_all_beams)
    return samplers.RandomSampler(temperature=temperature, seed=seed)


def prompt_lengths(causal_lm, prompts: list[str]) -> list[int]:
    """Tokens per prompt, counting the start token that generation puts in front."""
    return [len(causal_lm.preprocessor.tokenizer(p)) + 1 for p in prompts]


def check_lengths(causal_lm, prompts: list[str], max_length: int) -> None:
    context = causal_lm.backbone.max_sequence_length
    if max_length > context:
        raise AigcError(f"`max_length` {max_length} exceeds the model's context of {context} tokens")
    longest = max(prompt_lengths(causal_lm, prompts))
    if longest >= max_length:
        raise AigcError(f"a prompt is {longest} tokens (with the start token), which leaves no room to generate "
                        f"within `max_length` {max_length} (the model's context is {context})")


def generate(causal_lm, prompts: list[str], sampler: str = "greedy", *, max_length: int = 64,
             num_return_sequences: int = 1, seed: int = 0, temperature: float = 1.0, top_k: int = 50,
             top_p: float = 0.9, num_beams: int = 4, jit_compile: bool | None = None,
             precision: str = "fp32", repetition_penalty: float = 1.0,
             no_repeat_ngram_size: int = 0) -> list[list[str]]:
    """For each prompt, `num_return_sequences` texts (prompt included), decoded with the named sampler.

    `jit_compile`: None picks what was measured faster (XLA for the greedy KV-cache decoder, keras-hub's "auto" for
    the other samplers); True or False forces it.

    `precision="bf16"` decodes with bfloat16 weights (half the bytes read per token); greedy decoding runs the
    KV-cache decoder, the other samplers keras-hub's loop on a bf16 copy of the model.

    `repetition_penalty` (> 1) and `no_repeat_ngram_size` (> 0) edit the logits inside any sampler's loop
    (`aigc_tf.text.repetition`); greedy decoding with either runs keras-hub's greedy sampler instead of the KV-cache
    decoder.
    """
    import keras_hub

    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts:
        raise AigcError("no prompt given")
    if num_return_sequences < 1:
        raise AigcError(f"`num_return_sequences` must be >= 1, got {num_return_sequences}")
    if num_return_sequences > 1 and sampler == "greedy":
        raise AigcError("greedy decoding is deterministic: every return sequence would be the same; "
                        "use a sampling strategy (random, top_k, top_p) or beam")
    if sampler == "beam" and num_return_sequences > num_beams:
        raise AigcError(f"beam search returns at most `num_beams` ({num_beams}) sequences")
    check_lengths(causal_lm, prompts, max_length)
    from aigc_tf.text.repetition import controls_on, with_repetition_control

    controls = dict(repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size)
    controlled = controls_on(**controls)  # checks the controls' values before any work
    if sampler == "greedy" and not controlled:
        return [[text] for text in greedy_generate(causal_lm, prompts, max_length, precision, jit_compile is not False)]
    if precision != "fp32":
        from aigc_tf.text.models import with_precision

        causal_lm = with_precision(causal_lm, precision)

    all_beams = sampler == "beam" and num_return_sequences > 1
    # A second task on the same backbone and preprocessor: compiling it leaves the caller's model as it was. Keras
    # draws default seeds from Python's `random` while building the sampler's loop: `seeded` makes that repeatable
    # and gives the caller's random state back afterwards.
    with seeded(seed):
        causal_lm = keras_hub.models.GPT2CausalLM(backbone=causal_lm.backbone, preprocessor=causal_lm.preprocessor)
        chosen = make_sampler(sampler, temperature, top_k, top_p, num_beams, seed, all_beams)
        causal_lm.compile(sampler=with_repetition_control(chosen, **controls),
                          jit_compile="auto" if jit_compile is None else jit_compile)
        if all_beams:
            return [_best_beams(causal_lm, prompt, max_length, num_return_sequences) for prompt in prompts]
        batch = [p for p in prompts for _ in range(num_return_sequences)]
        texts = causal_lm.generate(batch, max_length=max_length)
    return [texts[i * num_return_sequences:(i + 1) * num_return_sequences] for i in range(len(prompts))]


def greedy_generate(causal_lm, prompts: list[str], max_length: int, precision: str = "fp32",
                    jit_compile: bool = True, decoder=None) -> list[str]:
    """Greedy texts (prompt included) from the KV-cache decoder: the same text as keras-hub's greedy `generate`.

    bf16 decoding is always compiled with XLA (see `kv_decoder`); pass a built `decoder` to reuse its compilation.
    """
    from aigc_tf.text.kv_decoder import KVCacheDecoder

    if decoder is None:
        decoder = KVCacheDecoder(causal_lm.backbone, precision, jit_compile=jit_compile or precision == "bf16")
    preprocessor = causal_lm.preprocessor
    inputs = preprocessor.generate_preprocess(prompts, sequence_length=max_length)
    outputs = decoder.generate_step(inputs, stop_token_ids=[preprocessor.tokenizer.end_token_id])
    texts = preprocessor.generate_postprocess(outputs)
    return [t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t) for t in texts]


def _best_beams(causal_lm, prompt: str, max_length: int, count: int) -> list[str]:
    """The `count` best beams of one prompt.

    `generate` cannot return several beams (keras-hub 0.32 fails on `return_all_beams=True`), so this drives the
    sampler with the model's cached forward pass the way `generate_step` does.
    """
    import tensorflow as tf

    inputs = causal_lm.preprocessor.generate_preprocess([prompt], sequence_length=max_length)
    token_ids, padding_mask = inputs["token_ids"], inputs["padding_mask"]
    hidden_states, cache = build_cache(causal_lm, token_ids)
    index = int(tf.reduce_min(tf.reduce_sum(tf.cast(padding_mask, "int32"), -1)))

    def next_token(prompt_ids, cache, index):
        batch = tf.shape(prompt_ids)[0]
        logits, hidden, cache = causal_lm.call_with_cache(tf.slice(prompt_ids, [0, index - 1], [batch, 1]), cache,
                                                          index - 1)
        return tf.squeeze(logits, 1), tf.squeeze(hidden, 1), cache

    beams, log_probs = causal_lm.sampler(next=next_token, prompt=token_ids, cache=cache, index=index,
                                         mask=padding_mask, stop_token_ids=None, hidden_states=hidden_states,
                                         model=causal_lm)
    order = tf.argsort(log_probs[0], direction="DESCENDING")[:count]
    tokenizer = causal_lm.preprocessor.tokenizer
    texts = []
    for row in tf.gather(beams[0], order):
        ids = [int(t) for t in row.numpy()[1:]]  # drop the start token
        if tokenizer.end_token_id in ids:
            ids = ids[: ids.index(tokenizer.end_token_id)]
        texts.append(tokenizer.detokenize([ids])[0] if ids else "")
    return [t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t) for t in texts]
