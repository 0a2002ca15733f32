"""`aigc-tf demo`: its stages are real `aigc-tf` command lines, run in order, timed, and a failure stops it."""

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
