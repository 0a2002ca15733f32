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

`stream` gives the same text in pieces as the tokens are decoded (`for piece in stream(...): print(piece, end="")`).
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
    preprocessor = causal_lm.preprocessor
    inputs = preprocessor.generate_preprocess(prompts, sequence_length=max_length)
    texts = preprocessor.generate_postprocess(greedy_token_ids(causal_lm, inputs, precision, jit_compile, decoder))
    return [t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t) for t in texts]


def greedy_token_ids(causal_lm, inputs: dict, precision: str = "fp32", jit_compile: bool = True,
                     decoder=None) -> dict:
    """`greedy_generate` on token ids: `inputs` {token_ids, padding_mask} (B, S), prompts left-aligned with their
    start token, -> {token_ids, padding_mask} (B, S), the mask off after each row's end token."""
    from aigc_tf.text.kv_decoder import KVCacheDecoder

    if decoder is None:
        decoder = KVCacheDecoder(causal_lm.backbone, precision, jit_compile=jit_compile or precision == "bf16")
    return decoder.generate_step(inputs, stop_token_ids=[causal_lm.preprocessor.tokenizer.end_token_id])


def check_streamable(prompts: list[str], num_return_sequences: int = 1, precision: str = "fp32",
                     as_json: bool = False) -> str:
    """The one prompt a streamed generation decodes; one line naming what streaming cannot do otherwise.

    `stream` prints a single fp32 text as it is decoded: several texts per prompt, bf16 weights or one JSON
    document of finished texts are what `generate` gives. Several prompts would be a batch, and a batch draws its
    samples differently from each prompt alone, so the text would not be the one `generate` prints for it.
    """
    given = {"`json`": as_json, "`num_return_sequences`": num_return_sequences > 1,
             f"`precision` {precision}": precision != "fp32"}
    conflicts = [name for name, on in given.items() if on]
    if conflicts:
        raise AigcError(f"`stream` prints one fp32 text as it is decoded; drop {', '.join(conflicts)}")
    if len(prompts) != 1:
        raise AigcError(f"`stream` takes one prompt, got {len(prompts)}; run one command per prompt")
    return prompts[0]


def stream(causal_lm, prompt: str, sampler: str = "greedy", *, max_length: int = 64, seed: int = 0,
           temperature: float = 1.0, top_k: int = 50, top_p: float = 0.9, repetition_penalty: float = 1.0,
           no_repeat_ngram_size: int = 0):
    """The text `generate(causal_lm, [prompt], sampler, ...)` returns, as a generator of pieces yielded while the
    tokens are decoded: the prompt first, then each new token's text.

    `"".join(stream(...)) == generate(...)[0][0]` for the same arguments (a test checks greedy, top-k, top-p, random
    and a repetition control). How: keras-hub's sampler loop asks `next(prompt, cache, index)` for every step's
    logits, and the token picked at the step before sits in `prompt[:, index - 1]` by then; a wrapper of the sampler
    (like `repetition.RepetitionControlled`) hands that token to Python through a `tf.py_function` before the step's
    forward pass runs, and the loop itself is the compiled (`tf.function`, no XLA) graph that `generate` runs for the
    non-greedy samplers on a CPU: the same ops and kernels, the same seeded draws (keras-hub's samplers draw with
    stateless random ops keyed by a `SeedGenerator`), so the same tokens. (Run eagerly instead, the loop's logits
    differ from the graph's in the last bit, and a seeded top-p text soon parts from `generate`'s.)
    Greedy `generate` runs the KV-cache decoder, which computes keras-hub's greedy tokens (tests/text/test_kv_decoder.py).
    On a GPU, where `generate` picks XLA by default, compare with `generate(..., jit_compile=False)`: a host callback
    cannot run inside an XLA loop.

    The loop runs in a background thread that puts tokens on a queue; the generator decodes the whole text so far and
    yields what is new, holding back a trailing U+FFFD (a character whose UTF-8 bytes span two BPE tokens); the last
    piece comes from the finished generation's own text. An exception in the thread is raised here; closing the
    generator early stops the decoding at its next token. Beam search cannot be streamed: its best text is known only
    at the end.
    """
    import queue
    import threading

    if not isinstance(prompt, str):
        raise AigcError("`stream` takes one prompt (a string); stream several prompts one after the other")
    if sampler == "beam":
        raise AigcError("beam search cannot be streamed: it keeps `num_beams` candidate texts and knows the best "
                        "only at the end; stream greedy, top_k, top_p or random decoding instead")
    from aigc_tf.text.repetition import controls_on, with_repetition_control

    controls = dict(repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size)
    controls_on(**controls)
    check_lengths(causal_lm, [prompt], max_length)
    events, stopped = queue.Queue(), threading.Event()
    chosen = with_repetition_control(make_sampler(sampler, temperature, top_k, top_p, seed=seed), **controls)
    reporter = _reporting(chosen, lambda token, index: events.put(("token", token, index)), stopped)

    def decode():  # `generate`'s keras-hub path, with the reporting sampler and without XLA
        import keras_hub

        try:
            with seeded(seed):
                model = keras_hub.models.GPT2CausalLM(backbone=causal_lm.backbone,
                                                      preprocessor=causal_lm.preprocessor)
                model.compile(sampler=reporter, jit_compile=False)
                events.put(("done", model.generate([prompt], max_length=max_length)[0]))
        except BaseException as err:  # raised in the caller's thread by `_pieces`
            events.put(("error", err))

    preprocessor = causal_lm.preprocessor
    inputs = preprocessor.generate_preprocess([prompt], sequence_length=max_length)
    length = int(sum(int(m) for m in inputs["padding_mask"][0]))  # the start token and the prompt's tokens
    prompt_ids = [int(t) for t in inputs["token_ids"][0][1:length]]
    return _pieces(decode, events, stopped, preprocessor.tokenizer, prompt_ids, length)


def _pieces(decode, events, stopped, tokenizer, ids: list[int], prompt_length: int):
    """The generator behind `stream`: runs `decode` in a thread and turns the tokens it reports into new text."""
    import threading

    def settled(ids):  # the text so far, without a trailing half character
        text = tokenizer.detokenize([ids])[0] if ids else ""
        return (text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)).rstrip("\ufffd")

    thread = threading.Thread(target=decode, name="aigc_tf-stream", daemon=True)
    thread.start()
    try:
        emitted = settled(ids)
        if emitted:
            yield emitted
        while True:
            kind, *value = events.get()
            if kind == "error":
                raise value[0]
            if kind == "done":
                text = value[0]
                if not text.startswith(emitted):  # cannot happen with GPT-2's byte-level BPE; never hide it
                    raise RuntimeError(f"streamed {emitted!r} is not a prefix of the decoded text {text!r}")
                if text != emitted:
                    yield text[len(emitted):]
                return
            token, index = value
            if index - 1 < prompt_length:  # the first step reports the prompt's last token
                continue
            ids.append(token)
            text = settled(ids)
            if len(text) > len(emitted) and text.startswith(emitted):
                yield text[len(emitted):]
                emitted = text
    finally:
        stopped.set()  # the consumer is done (or gone): the decoding thread stops at its next token
        thread.join()


def _reporting(inner, report, stopped):
    """`inner` (a keras-hub sampler) that calls `report(token, index)` with each token it chose, row 0's, at the
    start of the next step, before that step's forward pass; it fails the loop once `stopped` is set."""
    import keras_hub
    import tensorflow as tf

    class Reporting(keras_hub.samplers.Sampler):
        def __init__(self):
            super().__init__(temperature=getattr(inner, "temperature", 1.0))

        @property
        def variables(self):
            return inner.variables  # the wrapped sampler's seed state

        def __call__(self, next, prompt, *args, **kwargs):
            def hand_over(tokens, index):
                if stopped.is_set():
                    raise _Stopped("the stream's consumer is gone")
                report(int(tokens[0]), int(index))
                return True

            def reporting_next(token_ids, cache, index):
                done = tf.py_function(hand_over, [token_ids[:, index - 1], index], Tout=tf.bool)
                with tf.control_dependencies([done]):  # on the integer ids only: the logits' ops are unchanged
                    token_ids = tf.identity(token_ids)
                return next(token_ids, cache, index)

            return inner(reporting_next, prompt, *args, **kwargs)

    return Reporting()


class _Stopped(Exception):
    pass


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
