import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from aigc_tf.gan.export import export_gan
from aigc_tf.serving.layout import versions
from aigc_tf.gan.sample import generate, load_generator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gan_export(tiny_gan_run, tmp_path_factory):
    run_dir, config, _ = tiny_gan_run
    model_dir = tmp_path_factory.mktemp("saved_models") / "gan"
    first = export_gan(run_dir, model_dir)
    second = export_gan(run_dir, model_dir)
    return run_dir, config, model_dir, first, second


def test_exports_land_in_integer_versions(gan_export, tiny_gan_run):
    _, _, model_dir, first, second = gan_export
    trained_steps = tiny_gan_run[2].step
    assert (first.name, second.name) == ("1", "2") and versions(model_dir) == [1, 2]
    for version in (first, second):
        assert (version / "saved_model.pb").exists() and (version / "variables").is_dir()
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".partial")]
    meta = json.loads((second / "assets.extra" / "aigc_tf.json").read_text())
    assert meta["family"] == "gan" and meta["step"] == trained_steps


def test_fresh_process_with_only_tensorflow_reproduces_the_generator(gan_export, tmp_path):
    run_dir, config, _, export, _ = gan_export
    noise = np.random.default_rng(7).standard_normal((6, config.latent_dim)).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    script = textwrap.dedent(f"""
        import sys, numpy as np, tensorflow as tf
        served = tf.saved_model.load({str(export)!r}).signatures["serving_default"]
        out = served(noise=tf.constant(np.load({str(tmp_path / 'noise.npy')!r})))
        np.save({str(tmp_path / 'served.npy')!r}, out["images"].numpy())
        assert not [m for m in sys.modules if m.startswith("aigc_tf")], "the client must not need our code"
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    served = np.load(tmp_path / "served.npy")
    generator, _, _ = load_generator(run_dir)
    live = generate(generator, noise)
    assert served.shape == (6, 28, 28, 1) and 0.0 <= served.min() and served.max() <= 1.0
    np.testing.assert_allclose(served, live, atol=1e-5)


def test_saved_model_cli_runs_the_export_with_the_session_loader(gan_export, tmp_path):
    _, config, _, export, _ = gan_export
    saved_model_cli = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    shown = subprocess.run(saved_model_cli + ["show", "--dir", str(export), "--tag_set", "serve",
                                              "--signature_def", "serving_default"],
                           check=True, capture_output=True, text=True).stdout
    assert "inputs['noise']" in shown and "(-1, %d)" % config.latent_dim in shown
    assert "outputs['images']" in shown and "(-1, 28, 28, 1)" in shown
    np.save(tmp_path / "noise.npy", np.zeros((2, config.latent_dim), np.float32))
    subprocess.run(saved_model_cli + ["run", "--dir", str(export), "--tag_set", "serve", "--signature_def",
                                      "serving_default", "--inputs", f"noise={tmp_path / 'noise.npy'}",
                                      "--outdir", str(tmp_path)],
                   check=True, capture_output=True, text=True)
    images = np.load(tmp_path / "images.npy")
    assert images.shape == (2, 28, 28, 1)


def test_export_stores_each_weight_once(gan_export):
    run_dir, _, _, export, _ = gan_export
    generator, _, _ = load_generator(run_dir)
    weight_bytes = sum(int(np.prod(v.shape)) * 4 for v in generator.weights)
    stored = sum(f.stat().st_size for f in (export / "variables").iterdir())
    assert weight_bytes <= stored < 1.3 * weight_bytes  # tracking the model too would store them twice (2x)


def test_concurrent_exports_of_one_model_get_distinct_complete_versions(tiny_gan_run, tmp_path):
    """Three real `aigc-tf gan export` processes into one model folder at once: versions 1, 2 and 3, each complete,
    and a models.config that lists the model once."""
    run_dir = tiny_gan_run[0]
    model_dir = tmp_path / "saved_models" / "gan"
    procs = [subprocess.Popen([sys.executable, "-m", "aigc_tf", "gan", "export", "--run", str(run_dir), "--to",
                               str(model_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    assert versions(model_dir) == [1, 2, 3]
    assert sorted(p.name for p in model_dir.iterdir()) == [".lock", "1", "2", "3"]  # no .partial-* left behind
    for version in ("1", "2", "3"):
        assert json.loads((model_dir / version / "assets.extra" / "aigc_tf.json").read_text())["family"] == "gan"
    assert (tmp_path / "saved_models" / "models.config").read_text().count('name: "gan"') == 1
