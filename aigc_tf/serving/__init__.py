"""Deploy with TF Serving: the `models.config` that serves every export, a check that an export will load and
answer in the model server's own (Session-based) loader, and REST / gRPC clients.

- `aigc_tf.serving.model_config`: write and read `saved_models/models.config`.
- `aigc_tf.serving.check`: `find_exports`, `check_export` (a fresh process per export), `format_report`.
- `aigc_tf.serving.client`: `RestClient`, `GrpcClient`, with `generate_images`, `decode`, `encode`, `generate_text`.

Nothing is imported here, so `python -m aigc_tf.serving.check` starts a process that has loaded only what it needs.
"""
