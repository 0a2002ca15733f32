"""GPT-2 text generation with keras-hub: the real tokenizer offline (`tokenizer`), the model (`model`), training with
`fit` (`train`), sampling (`generate`), and the string-in/string-out SavedModel (`aigc_tf.export`)."""
