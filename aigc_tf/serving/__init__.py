"""Deploy with TF Serving: the `models.config` that serves every export, a check that an export will load and
answer in the model server's own (Session-based) loader, and REST / gRPC clients.

- `aigc_tf.serving.folders`: reading the `<name>/<version>/` layout (which models and versions a folder holds).
- `aigc_tf.serving.layout`: writing it: `publish`, which every family's export calls.
- `aigc_tf.serving.signatures`: an export's `serve` MetaGraph and a valid example input for each signature input.
- `aigc_tf.serving.model_config`: write and read `saved_models/models.config`, batching, the `docker run`.
- `aigc_tf.serving.check`: `check_export` (a fresh process per export), `check_serving_folder`, `format_report`.
- `aigc_tf.serving.warmup`: the warm-up requests the server replays at load time.
- `aigc_tf.serving.client`: `RestClient`, `GrpcClient`, with `generate_images`, `decode`, `encode`, `generate_text`; `ask`.

Nothing is imported here, so `python -m aigc_tf.serving.check` starts a process that has loaded only what it needs.
"""
