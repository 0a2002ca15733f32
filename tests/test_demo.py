"""`aigc-tf demo`: its stages are real `aigc-tf` command lines, run in order, timed, and a failure stops it; the\ntiny demo runs them all for real."""

import json

import pytest

from aigc_tf import demo
from aigc_tf.cli import build_parser


def test_every_stage_is_a_command_line_the_cli_accepts(tmp_path):
    parser = build_parser()
    stages = demo.stages(tmp_path / "runs", tmp_path / "models", seed=3, gan_epochs=2, text_steps=5, vae_epochs=1)
    families = [argv[0] for _, argv in stages]
    assert families[0] == "gan" and families[-1] == "serving" and {"text", "vae"} <= set(families)
    for _, argv in stages:
        args = parser.parse_args(argv)  # argparse exits on an unknown flag or value
        assert callable(args.handler)
    train = {argv[0]: parser.parse_args(argv) for _, argv in stages if argv[1] == "train"}
    assert (train["gan"].epochs, train["text"].steps, train["vae"].epochs) == (2, 5, 1)
    assert all(args.seed == 3 for args in train.values())
    tiny = demo.stages(tmp_path / "runs", tmp_path / "models", seed=3, tiny=True)
    assert [argv[:2] for _, argv in tiny] == [argv[:2] for _, argv in stages]  # the same commands, smaller
    for _, argv in tiny:
        parser.parse_args(argv)
    tiny_train = {argv[0]: parser.parse_args(argv) for _, argv in tiny if argv[1] == "train"}
    assert (tiny_train["gan"].steps, tiny_train["text"].steps, tiny_train["vae"].epochs) == (20, 2, 1)


def test_demo_runs_the_stages_in_order_times_them_and_stops_at_a_failure(tmp_path):
    ran = []
    times = demo.run_demo(lambda argv: ran.append(argv) or 0, tmp_path / "runs", tmp_path / "models", started_at=0.0)
    assert ran == [argv for _, argv in demo.stages(tmp_path / "runs", tmp_path / "models", 0)]
    written = json.loads((tmp_path / "runs" / "demo_times.json").read_text())
    assert list(written) == ["setup (venv, install, data)", "GAN", "GPT-2", "VAE", "serving check", "total"]
    assert times["total"] == pytest.approx(sum(v for k, v in times.items() if k != "total"))

    ran.clear()
    failing = lambda argv: ran.append(argv) or (2 if argv[:2] == ["text", "train"] else 0)  # noqa: E731
    with pytest.raises(SystemExit, match="text train"):
        demo.run_demo(failing, tmp_path / "runs2", tmp_path / "models2")
    assert ran[-1][:2] == ["text", "train"]  # nothing after the failed stage ran
    assert not (tmp_path / "runs2" / "demo_times.json").exists()


@pytest.mark.slow
def test_tiny_demo_runs_every_stage_for_real(tmp_path):
    """The whole chain, not a mock: `aigc-tf demo --tiny` trains, evaluates, samples and exports each model on tiny
    budgets in a fresh process, then the exports pass the stock-server check."""
    import math
    import subprocess
    import sys

    runs, models = tmp_path / "runs", tmp_path / "models"
    done = subprocess.run([sys.executable, "-m", "aigc_tf", "demo", "--tiny", "--runs", str(runs),
                           "--models", str(models)], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(json.loads((runs / "demo_times.json").read_text())) == ["GAN", "GPT-2", "VAE", "serving check",
                                                                        "total"]
    gan = json.loads((runs / "gan" / "eval.json").read_text())
    assert gan["step"] == 20 and math.isfinite(gan["fid"]) and gan["fid"] > gan["real_fid_floor"]
    assert (runs / "gan" / "nearest_copies.png").exists()
    vae = json.loads((runs / "vae" / "eval.json").read_text())
    assert math.isfinite(vae["fid"])
    before = json.loads((runs / "eval_base_moby_dick.json").read_text())
    after = json.loads((runs / "gpt2" / "eval_moby_dick.json").read_text())
    assert math.isfinite(before["perplexity"]) and math.isfinite(after["perplexity"])
    assert "4 of 4 exports pass" in done.stdout
    assert sorted(p.name for p in models.iterdir()) == ["gan", "gpt2", "models.config", "vae_decoder", "vae_encoder"]
    assert f"stage times: {runs / 'demo_times.json'}" in done.stderr
