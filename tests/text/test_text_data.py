import numpy as np
import pytest

from aigc_tf import AigcError
from aigc_tf.text import data as text
from aigc_tf.text.tokenizer import gpt2_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_tokenizer()


def test_tokenizer_gives_openai_gpt2_ids_and_round_trips(tokenizer):
    assert list(tokenizer("hello")) == [31373]
    assert list(tokenizer(" world")) == [995]
    assert list(tokenizer("It is a beautiful day")) == [1026, 318, 257, 4950, 1110]
    assert tokenizer.vocabulary_size() == 50257 and tokenizer.end_token_id == 50256
    sample = "Call me Ishmael.  Some years ago—never mind how long\tprecisely: 1851! é 世界"
    assert tokenizer.detokenize(tokenizer(sample)) == sample


def test_tokenize_documents_separates_documents_with_end_of_text(tokenizer):
    ids = text.tokenize_documents(["hello", "It is a beautiful day"], tokenizer)
    assert ids.dtype == np.uint16
    assert list(ids) == [31373, 50256, 1026, 318, 257, 4950, 1110, 50256]


def test_pack_windows_uses_every_token_without_padding():
    ids = np.arange(23, dtype=np.uint16)
    windows = text.pack_windows(ids, 5)  # (23 - 1) // 5 = 4 windows of 6
    assert windows.shape == (4, 6) and windows.dtype == np.int32
    assert list(windows[0]) == [0, 1, 2, 3, 4, 5] and list(windows[1]) == [5, 6, 7, 8, 9, 10]
    with pytest.raises(AigcError, match="too few for one sequence"):
        text.pack_windows(ids[:4], 5)
    train, val = text.split_windows(windows, 0.25)
    assert len(train) == 3 and np.array_equal(val[0], windows[3])


def test_lm_dataset_targets_are_inputs_shifted_by_one():
    windows = text.pack_windows(np.arange(41, dtype=np.uint16), 4)
    x, y, weight = next(iter(text.lm_dataset(windows, batch_size=2)))
    np.testing.assert_array_equal(x["token_ids"][:, 1:], y[:, :-1])
    assert x["padding_mask"].numpy().all() and weight.numpy().min() == 1.0


def test_local_corpora_and_their_errors(tmp_path, tokenizer):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "b.txt").write_text("second document", encoding="utf-8")
    (folder / "a.txt").write_text("first document", encoding="utf-8")
    (folder / "empty.txt").write_text("  \n", encoding="utf-8")
    assert text.load_documents(str(folder)) == ["first document", "second document"]
    assert text.load_documents(str(folder / "a.txt")) == ["first document"]
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(AigcError, match="not UTF-8"):
        text.load_documents(str(tmp_path / "latin1.txt"))
    with pytest.raises(AigcError, match="holds no text"):
        text.load_documents(str(folder / "empty.txt"))
    with pytest.raises(AigcError, match="no such file or folder"):
        text.load_documents(str(tmp_path / "missing"))


def test_missing_named_corpus_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_TF_HOME", str(tmp_path))
    with pytest.raises(AigcError, match=r"run `aigc-tf data fetch moby_dick` first"):
        text.load_documents("moby_dick")


def test_offline_corpora_are_the_real_texts(tokenizer):
    sotu = text.load_documents("sotu")
    moby = text.load_documents("moby_dick")
    assert len(sotu) == 233 and sotu[0].startswith("Fellow-Citizens of the Senate")
    assert len(moby) == 136 and "Call me Ishmael." in moby[0]
    assert 1.9e6 < len(text.corpus_token_ids("sotu", tokenizer)) < 2.3e6
    assert 2.5e5 < len(text.corpus_token_ids("moby_dick", tokenizer)) < 3.2e5


def test_tfds_corpus_errors_are_one_line():
    with pytest.raises(AigcError, match="tfds could not load 'no_such_text_set'"):
        text.load_documents("tfds:no_such_text_set")
