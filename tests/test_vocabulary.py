"""Tests for dl.data.vocabulary: reserved ids, encoding and decoding."""

import numpy as np
import pytest

from dl.data.vocabulary import BOS, EOS, PAD, UNK, Vocabulary


def test_vocabulary_round_trip_and_reserved_ids():
    vocab = Vocabulary("abcab")
    assert len(vocab) == 7 and vocab.size == 7
    assert vocab.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    assert [vocab.stoi[c] for c in "abc"] == [4, 5, 6]

    ids = vocab.encode("cab", add_bos=True, add_eos=True, max_len=8)
    np.testing.assert_array_equal(ids, [BOS, 6, 4, 5, EOS, PAD, PAD, PAD])
    assert vocab.decode(ids) == "cab"
    assert vocab.decode([4, EOS, 5]) == "a"
    np.testing.assert_array_equal(vocab.encode("az"), [4, UNK])
    assert vocab.decode(vocab.encode("az")) == "a<unk>"
    batch = vocab.encode_batch(["ab", "c"], max_len=4, add_eos=True)
    assert vocab.decode_batch(batch) == ["ab", "c"]

    words = Vocabulary.from_texts([["hi", "there"], ["hi"]], separator=" ")
    assert words.decode(words.encode(["there", "hi"])) == "there hi"


def test_vocabulary_errors():
    vocab = Vocabulary("ab")
    with pytest.raises(ValueError, match="empty"):
        vocab.encode("")
    with pytest.raises(ValueError, match=r"length 5.*max_len=4"):
        vocab.encode("abab", add_eos=True, max_len=4)
    np.testing.assert_array_equal(
        vocab.encode("abab", add_eos=True, max_len=4, truncate=True), [4, 5, 4, EOS]
    )
    with pytest.raises(ValueError, match=r"id 6.*size 6"):
        vocab.decode([4, 6])
    with pytest.raises(ValueError, match=r"id -1"):
        vocab.decode([-1])
