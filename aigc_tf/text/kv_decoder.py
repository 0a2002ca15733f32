"""Greedy GPT-2 decoding without per-token overhead: one compiled loop over a preallocated KV cache.

keras-hub's `generate` is general (any sampler, any backbone) and pays for it at batch 1, where decoding should be
bound by reading the weights once per token: it seeds its cache with a forward pass over the whole padded length
(LM-head logits included, for positions it then overwrites), copies every layer's cache into one stacked tensor
each step, and its tied LM head multiplies by the transposed embedding table. This decoder computes the same tokens
as `GreedySampler` + `generate_step` (a test checks it) with the same weights laid out for the step:
- query, key and value kernels fused into one [C, 3C] matmul per layer, the LM head stored transposed [C, V];
- a prefill of only the prompt's tokens, logits for its last position only;
- per-layer key/value caches (B, H, S, D) preallocated for the final length and updated in place
  (`dynamic_update_slice`), all inside one `tf.while_loop`;
- `precision="bf16"`: the matmul weights stored in bfloat16, half the bytes read per token, and laid out
  [out, in] so that each output is a dot product along contiguous memory. At batch 1 a matmul is a matrix-vector
  product bound by reading the matrix, and XLA fuses the bf16 -> fp32 convert into such a dot at full bandwidth,
  so bf16 decoding runs under XLA; LayerNorm, softmax, the cache and the residual stream stay float32, and each
  bf16 kernel carries its bias as an extra input column (a bias add fused into the converted dot is slow).
- bf16 compiles one XLA program per token step (and one for the prefill) and loops over them in the TF graph,
  where fp32 compiles the whole loop: inside an XLA `while` the weight's bf16 -> fp32 convert is loop-invariant,
  so XLA would hoist it out and every token would read fp32 weights again.
The measurements behind these choices (and the int8 variant that was tried and dropped) are in bench/RESULTS.md.

`sample` is the loop the TF Serving export runs: the same forward pass, with per-row controls (max_new_tokens,
temperature, top_k, top_p, seed) read from tensors at run time, so one graph serves every request. Without XLA (a
stock model server disables it) the forward pass is plain TF: `tf.slice` and `TensorStridedSliceUpdate` instead of
the `Xla*` ops, and fp32 matmuls with `tf.nn.bias_add`, which grappler fuses with the MatMul into one oneDNN op
(bench/RESULTS.md: `fp32_no_xla`).

A prefix- or adapter-tuned model (`aigc_tf.text.peft`) decodes here too: its prefix is prepended to every layer's
keys and values at attention time (the cache holds only real tokens), its adapters follow the two projections.

The module is a `tf.Module`, so `aigc_tf.text.export` can track its variables and serve the same loop.
"""

from __future__ import annotations

import math

import tensorflow as tf

from aigc_tf.compat import gpt2_backbone_weights, xla_ops
from aigc_tf.hardware import PRECISIONS
from aigc_tf.text.peft import decoder_weights

xla = xla_ops()  # dynamic_slice / dynamic_update_slice: the in-place cache update under XLA


def _layer_norm(x, gamma, beta, epsilon=1e-5):
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + epsilon) * gamma + beta


def _choose(logits, temperature, top_k, top_p, seeds, index):
    """The next token of each row (B,) from logits (B, V): argmax where temperature is 0, else a top-k / top-p draw.

    The draw is the Gumbel-max trick over the kept tokens, with noise from `stateless_uniform` keyed by
    (seed, index) per row and indexed by token id. A row's token depends on its own logits, controls and seed
    only, never on what else shares the batch (TF Serving's batching merges requests): rows without a filter draw
    from all logits unsorted, whatever the others need; top-p's mass is a running sum over the row's own sorted
    top-k, divided by that sum's last value (a scan, not a reduction whose order could change with the batch's k).
    """
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)

    def sample():
        vocabulary = tf.shape(logits)[-1]
        row_k = tf.where(top_k > 0, tf.minimum(top_k, vocabulary), vocabulary)  # (B,)
        filtered = (row_k < vocabulary) | (top_p < 1.0)  # (B,) rows that need their top tokens sorted
        scaled = logits / tf.maximum(temperature, 1e-6)[:, None]
        noise = tf.map_fn(lambda seed: tf.random.stateless_uniform([vocabulary], tf.stack([seed, index]), 1e-20, 1.0),
                          seeds, fn_output_signature=tf.float32)  # (B, V): one draw per token id
        gumbel = -tf.math.log(-tf.math.log(noise))
        unfiltered_draw = tf.argmax(scaled + gumbel, axis=-1, output_type=tf.int32)

        def filtered_draw():
            k = tf.reduce_max(tf.where(filtered & (temperature > 0), row_k, 1))
            values, indices = tf.math.top_k(scaled, k=k)  # sorted, most likely first
            in_top_k = tf.range(k)[None, :] < row_k[:, None]
            weights = tf.where(in_top_k, tf.exp(values - values[:, :1]), 0.0)
            running = tf.cumsum(weights, axis=-1)  # a scan: each prefix the same whatever k is
            total = tf.gather(running, tf.minimum(row_k, k) - 1, batch_dims=1)[:, None]
            mass_before = (running - weights) / total
            keep = in_top_k & ((mass_before < top_p[:, None]) | (top_p[:, None] >= 1.0))
            pick = tf.argmax(tf.where(keep, values + tf.gather(gumbel, indices, batch_dims=1), -float("inf")),
                             axis=-1, output_type=tf.int32)
            return tf.gather(indices, pick, batch_dims=1)

        drawn = tf.cond(tf.reduce_any(filtered & (temperature > 0)), filtered_draw, lambda: unfiltered_draw)
        return tf.where(temperature > 0, tf.where(filtered, drawn, unfiltered_draw), greedy)

    return tf.cond(tf.reduce_any(temperature > 0), sample, lambda: greedy)


class KVCacheDecoder(tf.Module):
    """Greedy decoding (`decode`, `generate_step`) and sampling with per-row controls (`sample`) for a keras-hub
    `GPT2Backbone`'s weights (copied, in `precision`).

    Args:
        backbone: a built `keras_hub.models.GPT2Backbone` (fp32 or bf16 weights).
        precision: "fp32" or "bf16": the dtype of the matmul weights.
        jit_compile: compile with XLA (needs static shapes: the prefill length becomes part of the trace).
        compile_per_step: under XLA, compile each token step on its own and loop in the graph instead of compiling
            the whole loop; default: for bf16 only (see the module docstring).
    """

    def __init__(self, backbone, precision: str = "fp32", jit_compile: bool = False,
                 compile_per_step: bool | None = None):
        super().__init__(name="kv_cache_decoder")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision, self.jit_compile = precision, jit_compile
        self.dtype = tf.bfloat16 if precision == "bf16" else tf.float32
        self.transposed = precision == "bf16"  # matrices stored [out, in], read by a transposed dot
        self.num_layers, self.num_heads = backbone.num_layers, backbone.num_heads
        self.hidden_dim = backbone.hidden_dim
        weights = gpt2_backbone_weights(backbone)  # float32, by role (keras-hub's variable paths are in compat)
        c = self.hidden_dim

        def matrix(value, name):  # what is read once per token: stored in the decoding precision
            value = tf.transpose(value) if self.transposed else value
            return tf.Variable(tf.cast(value, self.dtype), trainable=False, name=name)

        def vector(value, name):  # biases, LayerNorm: few bytes, kept in float32
            return tf.Variable(value, trainable=False, name=name)

        def dense(kernel, bias, name):
            """(kernel, bias) variables; for bf16 the bias rides in the kernel's last column and bias is None.

            XLA's CPU matvec over a converted bf16 kernel loses its full-bandwidth path when an elementwise consumer
            such as the bias add is fused into it (bench/RESULTS.md has the side-by-side timing); a column of ones
            appended to the input adds the bias inside the dot instead.
            """
            if not self.transposed:
                return matrix(kernel, name), vector(bias, f"{name}_bias")
            return matrix(tf.concat([kernel, bias[None, :]], 0), name), None

        embeddings = weights["token_embedding"]  # (V, C)
        # The LM head is the tied embedding: (C, V) for a plain dot; (V, C), the table itself, when transposed.
        self.lm_head = matrix(tf.transpose(embeddings), "lm_head")
        self.token_embedding = self.lm_head if self.transposed else \
            tf.Variable(embeddings, trainable=False, name="token_embedding")
        self.position_embedding = vector(weights["position_embedding"], "position_embedding")
        self.layers = []
        peft_layers = decoder_weights(backbone)  # a prefix- or adapter-tuned model's extra weights (text/peft.py)
        for i, w in enumerate(weights["layers"]):
            qkv = tf.concat([tf.reshape(w[n][0], [c, c]) for n in ("query", "key", "value")], 1)
            qkv_bias = tf.concat([tf.reshape(w[n][1], [c]) for n in ("query", "key", "value")], 0)
            layer = {
                "ln1_gamma": vector(w["attention_norm"][0], f"l{i}_ln1_gamma"),
                "ln1_beta": vector(w["attention_norm"][1], f"l{i}_ln1_beta"),
                "ln2_gamma": vector(w["feedforward_norm"][0], f"l{i}_ln2_gamma"),
                "ln2_beta": vector(w["feedforward_norm"][1], f"l{i}_ln2_beta"),
            }
            layer["qkv"], layer["qkv_bias"] = dense(qkv, qkv_bias, f"l{i}_qkv")
            out_kernel, out_bias = w["attention_output"]
            layer["out"], layer["out_bias"] = dense(tf.reshape(out_kernel, [c, c]), out_bias, f"l{i}_out")
            layer["ff1"], layer["ff1_bias"] = dense(*w["feedforward_intermediate"], f"l{i}_ff1")
            layer["ff2"], layer["ff2_bias"] = dense(*w["feedforward_output"], f"l{i}_ff2")
            layer.update(self._peft_variables(peft_layers[i], i) if peft_layers else {})
            self.layers.append(layer)
        self.final_gamma = vector(weights["final_norm"][0], "final_gamma")
        self.final_beta = vector(weights["final_norm"][1], "final_beta")
        if compile_per_step is None:
            compile_per_step = precision == "bf16"
        self.compile_per_step = bool(jit_compile and compile_per_step)
        # The forward pass the loop calls: its own XLA program per shape (prefill, step) when compiled per step.
        self._advance = tf.function(self._pick_next, jit_compile=True) if self.compile_per_step else self._pick_next
        self.decode = tf.function(self._decode_loop, jit_compile=jit_compile and not self.compile_per_step)
        # Sampling with per-row controls: the forward pass alone is compiled (when jit_compile), the choice of the
        # next token (a data-dependent top-k, random draws) stays plain TF around it.
        self._advance_logits = tf.function(self._next_logits, jit_compile=True) if jit_compile else self._next_logits
        self.sample = tf.function(self._sample_loop)
        self._logits = tf.function(self._all_logits, jit_compile=jit_compile)

    @staticmethod
    def _peft_variables(extra: dict, i: int) -> dict:
        """Layer i's prefix (H, P, D) keys and values, or its two adapters' [down, down bias, up, up bias], in float32:
        a few kilobytes, read once per token whatever the decoding precision."""
        if "prefix_keys" in extra:
            return {name: tf.Variable(extra[name], trainable=False, name=f"l{i}_{name}")
                    for name in ("prefix_keys", "prefix_values")}
        return {"adapters": [[tf.Variable(w, trainable=False, name=f"l{i}_adapter{j}_{k}") for k, w in enumerate(four)]
                             for j, four in enumerate(extra["adapters"])]}

    @staticmethod
    def _adapt(h, adapter):
        """A bottleneck adapter on (N, C) float32: h + W_up gelu(W_down h + b_down) + b_up."""
        down, down_bias, up, up_bias = adapter
        return h + tf.nn.bias_add(tf.matmul(tf.nn.gelu(tf.nn.bias_add(tf.matmul(h, down), down_bias), approximate=True),
                                            up), up_bias)

    @property
    def weight_bytes(self) -> int:
        """Bytes read per decoded token: every matrix but the embedding table (one row of it is read)."""
        read = {id(v): v for v in self.variables if self.transposed or v is not self.token_embedding}
        return int(sum(v.shape.num_elements() * v.dtype.size for v in read.values()))

    def _dense(self, x, kernel, bias=None):
        """x (N, in) float32 -> (N, out) float32. A bf16 layer kernel [out, in + 1] carries its own bias."""
        if not self.transposed:
            y = tf.matmul(x, kernel)
            return y if bias is None else tf.nn.bias_add(y, bias)  # MatMul + BiasAdd: one fused oneDNN op in plain TF
        if kernel is not self.lm_head:  # a layer's kernel, bias folded in by `dense` (the tied LM head has none)
            x = tf.concat([x, tf.ones_like(x[:, :1])], 1)
        if not self.jit_compile:  # plain TF would materialise an fp32 copy of the kernel per call: bf16 GEMM instead
            return tf.cast(tf.matmul(tf.cast(x, tf.bfloat16), kernel, transpose_b=True), tf.float32)
        return tf.matmul(x, tf.cast(kernel, tf.float32), transpose_b=True)

    def _forward(self, token_ids, start, caches):
        """Run (B, T) tokens at positions start..start+T-1 through the layers, writing their keys and values.

        Returns the final hidden states (B, T, C) after the last LayerNorm and the updated caches.
        """
        batch = tf.shape(token_ids)[0]
        length = token_ids.shape[1] or tf.shape(token_ids)[1]  # static where known: XLA needs the slice's size
        h_count, c = self.num_heads, self.hidden_dim
        d = c // h_count
        x = tf.cast(tf.gather(self.token_embedding, token_ids), tf.float32)  # (B, T, C) (the table is (V, C))
        if self.jit_compile:  # tf.slice would make `start` a compile-time constant of a step compiled on its own
            x += xla.dynamic_slice(self.position_embedding, [start, 0], [length, c])
        else:  # the Xla* ops run only through XLA, which a stock model server disables
            x += tf.slice(self.position_embedding, [start, 0], [length, c])
        cache_length = tf.shape(caches[0])[2]
        query_positions = start + tf.range(length)  # (T,)
        visible = tf.range(cache_length)[None, :] <= query_positions[:, None]  # (T, S): causal over the cache
        bias = tf.where(visible, 0.0, -1e9)
        new_caches = []
        for i, layer in enumerate(self.layers):
            keys, values = caches[2 * i], caches[2 * i + 1]  # (B, H, S, D)
            h = tf.reshape(_layer_norm(x, layer["ln1_gamma"], layer["ln1_beta"]), [-1, c])  # (B*T, C)
            qkv = tf.reshape(self._dense(h, layer["qkv"], layer["qkv_bias"]), [batch, length, 3, h_count, d])
            q, k, v = (tf.transpose(qkv[:, :, j], [0, 2, 1, 3]) for j in range(3))  # (B, H, T, D) each
            keys, values = self._write_cache(keys, k, start), self._write_cache(values, v, start)
            new_caches += [keys, values]
            layer_bias = bias
            if "prefix_keys" in layer:  # prefix tuning: P learned keys and values in front, visible to every query
                prefix_shape = tf.concat([[batch], tf.shape(layer["prefix_keys"])], 0)  # (B, H, P, D)
                keys = tf.concat([tf.broadcast_to(layer["prefix_keys"], prefix_shape), keys], 2)
                values = tf.concat([tf.broadcast_to(layer["prefix_values"], prefix_shape), values], 2)
                layer_bias = tf.pad(bias, [[0, 0], [tf.shape(layer["prefix_keys"])[1], 0]])  # (T, P + S)
            scores = tf.matmul(q, keys, transpose_b=True) / math.sqrt(d) + layer_bias  # (B, H, T, S)
            attended = tf.matmul(tf.nn.softmax(scores), values)  # (B, H, T, D)
            attended = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [-1, c])  # (B*T, C)
            out = self._dense(attended, layer["out"], layer["out_bias"])
            if "adapters" in layer:  # bottleneck adapters after the attention and the feed-forward projections
                out = self._adapt(out, layer["adapters"][0])
            x += tf.reshape(out, [batch, length, c])
            h = tf.reshape(_layer_norm(x, layer["ln2_gamma"], layer["ln2_beta"]), [-1, c])
            h = tf.nn.gelu(self._dense(h, layer["ff1"], layer["ff1_bias"]), approximate=True)
            out = self._dense(h, layer["ff2"], layer["ff2_bias"])
            if "adapters" in layer:
                out = self._adapt(out, layer["adapters"][1])
            x += tf.reshape(out, [batch, length, c])
        return _layer_norm(x, self.final_gamma, self.final_beta), new_caches

    def _write_cache(self, cache, update, start):
        """`cache` (B, H, S, D) with `update` (B, H, T, D) written at positions start..start+T-1."""
        if self.jit_compile:
            return xla.dynamic_update_slice(cache, update, [0, 0, start, 0])  # in place under XLA
        shape = tf.shape(update)
        begin = tf.stack([0, 0, start, 0])
        return tf.raw_ops.TensorStridedSliceUpdate(input=cache, begin=begin, end=begin + shape,
                                                   strides=tf.ones([4], tf.int32), value=update)

    def _pick_next(self, token_ids, start, caches):
        """`_forward`, then the greedy pick from the last position: (B,) next tokens and the updated caches."""
        logits, caches = self._next_logits(token_ids, start, caches)
        return tf.argmax(logits, axis=-1, output_type=tf.int32), caches

    def _next_logits(self, token_ids, start, caches):
        """`_forward`, then the logits (B, V) of the last position and the updated caches."""
        hidden, caches = self._forward(token_ids, start, caches)
        return self._head(hidden[:, -1]), caches

    def _head(self, hidden):
        """Logits (N, V) from final hidden states (N, C)."""
        return self._dense(hidden, self.lm_head)

    def _empty_caches(self, batch, length):
        d = self.hidden_dim // self.num_heads
        return [tf.zeros([batch, self.num_heads, length, d]) for _ in range(2 * self.num_layers)]

    def _decode_loop(self, token_ids, padding_mask, prefill_length, stop_token_id):
        """keras-hub's greedy `generate_step`, over the same (B, S) prompt layout.

        Positions where `padding_mask` is set keep their prompt token; the others get the greedy token. Decoding
        starts after the `prefill_length` first tokens (the shortest prompt) and ends at S, or once every row has
        produced `stop_token_id` after its prompt (-1: never).
        """
        token_ids = tf.cast(token_ids, tf.int32)
        padding_mask = tf.cast(padding_mask, tf.bool)
        batch, total = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
        guess, caches = self._advance(token_ids[:, :prefill_length], 0, self._empty_caches(batch, total))

        def keep_prompt(index, guess):
            return tf.where(padding_mask[:, index], token_ids[:, index], guess)

        def write(ids, index, token):
            return tf.tensor_scatter_nd_update(ids, tf.stack([tf.range(batch), tf.fill([batch], index)], 1), token)

        def not_done(index, ids, done, guess, *caches):
            return (index < total) & ~tf.reduce_all(done)

        def step(index, ids, done, guess, *caches):
            token = keep_prompt(index, guess)
            ids = write(ids, index, token)
            done = done | (~padding_mask[:, index] & tf.equal(token, stop_token_id))
            guess, caches = self._advance(token[:, None], index, list(caches))
            return (index + 1, ids, done, guess, *caches)

        index = tf.convert_to_tensor(prefill_length, tf.int32)
        done = tf.zeros([batch], tf.bool)
        _, ids, _, _, *_ = tf.while_loop(not_done, step, (index, token_ids, done, guess, *caches),
                                         maximum_iterations=total)
        generated = ~padding_mask & tf.equal(ids, stop_token_id)  # as generate_step: mask what follows a stop
        after = tf.cumsum(tf.cast(generated, tf.int32), axis=-1) - tf.cast(generated, tf.int32)
        return {"token_ids": ids, "padding_mask": tf.equal(after, 0)}

    def _sample_loop(self, token_ids, padding_mask, prefill_length, stop_token_id, max_new_tokens, temperature,
                     top_k, top_p, seeds):
        """Decoding with per-row controls, over the (B, S) prompt layout of `_decode_loop`.

        Row b decodes at most `max_new_tokens[b]` tokens after its prompt: greedily where `temperature[b] == 0`,
        else by sampling softmax(logits / temperature) restricted to the `top_k[b]` most likely tokens (0: all) and
        to the smallest set whose probability reaches `top_p[b]` (1: all). Draws are stateless, keyed by
        (`seeds[b]`, position): the same seed gives the same text, whatever else shares the batch.
        Returns {token_ids, padding_mask} (B, S); the mask is off after a row's stop token or its last new token.
        """
        token_ids = tf.cast(token_ids, tf.int32)
        padding_mask = tf.cast(padding_mask, tf.bool)
        batch, total = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
        lengths = tf.reduce_sum(tf.cast(padding_mask, tf.int32), -1)  # (B,) prompt tokens, start token included
        row_end = tf.minimum(lengths + max_new_tokens, total)  # (B,) first position a row does not fill
        logits, caches = self._advance_logits(token_ids[:, :prefill_length], 0, self._empty_caches(batch, total))

        def step(index, ids, done, logits, *caches):
            # Only rows past their prompt and not done draw a token: the rest sample nothing (greedy is free).
            active = ~padding_mask[:, index] & ~done
            chosen = _choose(logits, tf.where(active, temperature, 0.0), top_k, top_p, seeds, index)
            token = tf.where(padding_mask[:, index], ids[:, index], chosen)
            ids = tf.tensor_scatter_nd_update(ids, tf.stack([tf.range(batch), tf.fill([batch], index)], 1), token)
            done = done | (~padding_mask[:, index] & tf.equal(token, stop_token_id)) | (index + 1 >= row_end)
            logits, caches = self._advance_logits(token[:, None], index, list(caches))
            return (index + 1, ids, done, logits, *caches)

        def not_done(index, ids, done, *rest):
            return (index < total) & ~tf.reduce_all(done)

        index = tf.convert_to_tensor(prefill_length, tf.int32)
        done = index >= row_end
        _, ids, _, _, *_ = tf.while_loop(not_done, step, (index, token_ids, done, logits, *caches),
                                         maximum_iterations=total)
        generated = ~padding_mask & tf.equal(ids, stop_token_id)
        after_stop = tf.cumsum(tf.cast(generated, tf.int32), axis=-1) - tf.cast(generated, tf.int32)
        in_budget = tf.range(total)[None, :] < row_end[:, None]
        return {"token_ids": ids, "padding_mask": tf.equal(after_stop, 0) & in_budget}

    def _all_logits(self, token_ids):
        """Logits (B, T, V) of every position of (B, T) tokens: for perplexity in the decoding precision."""
        batch, length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
        hidden, _ = self._forward(token_ids, 0, self._empty_caches(batch, length))
        return tf.reshape(self._head(tf.reshape(hidden, [-1, self.hidden_dim])), [batch, length, -1])

    def generate_step(self, inputs, stop_token_ids=None):
        """Drop-in for `GPT2CausalLM.generate_step` with a greedy sampler: {token_ids, padding_mask} (B, S)."""
        mask = tf.cast(inputs["padding_mask"], tf.int32)
        prefill = int(tf.reduce_min(tf.reduce_sum(mask, -1))) if self.jit_compile else \
            tf.reduce_min(tf.reduce_sum(mask, -1))
        stop = -1 if not stop_token_ids else int(stop_token_ids[0])
        return self.decode(inputs["token_ids"], inputs["padding_mask"], prefill, tf.constant(stop))

    def logits(self, token_ids):
        return self._logits(tf.convert_to_tensor(token_ids, tf.int32))

