"""Windows of a text file for character-level language modelling (`text:PATH`)."""

from __future__ import annotations

import os

import numpy as np
from absl import logging

from dl.config import option
from dl.data.sequences import require_unstandardized
from dl.data.source import Source, check_file
from dl.data.vocabulary import UNK, Vocabulary
from dl.errors import ConfigError

SAMPLE_TEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "text", "sample.txt")

# Tab, newline and the printable ASCII characters: the default char-LM alphabet.
ASCII_SYMBOLS = "\t\n" + "".join(chr(c) for c in range(32, 127))

VOCABULARIES = ("ascii", "file")


def load_text(path: str, cfg=None) -> Source:
    """Windows of a text file for character-level language modelling.

    Fields: sequence_length L (default 64), stride between windows (0: L, windows do not
    overlap), max_chars (a longer text is truncated, with a logged warning), vocabulary:
    "ascii" (default; tab, newline and printable ASCII, the same ids for every file, other
    characters map to <unk> with a logged warning) or "file" (every character of the file).

    Args:
      path: the text file (UTF-8).
      cfg: dataset config.

    Returns:
      A token Source: x [N, L] and y [N, L] (the next character of each position);
      info["vocab"] lists the symbols in id order.
    """
    check_file(path, "text")
    require_unstandardized(cfg, "text")
    length = int(option(cfg, "sequence_length", 64))
    stride = int(option(cfg, "stride", 0) or length)
    max_chars = int(option(cfg, "max_chars", 2_000_000))
    how = option(cfg, "vocabulary", "ascii")
    if length < 1 or stride < 1 or max_chars < 2:
        raise ConfigError(
            f"text needs sequence_length >= 1, stride >= 1 and max_chars >= 2, got {length}, "
            f"{stride}, {max_chars}"
        )
    if how not in VOCABULARIES:
        raise ConfigError(f"dataset.vocabulary must be one of {VOCABULARIES}, got {how!r}")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ConfigError(f"text file {path!r} is not UTF-8 text: {e}") from e
    if not text.strip():
        raise ConfigError(f"text file {path!r} is empty")
    info: dict = {"file": path, "chars": len(text)}
    if len(text) > max_chars:
        logging.warning(
            "text file %s has %d characters; using the first dataset.max_chars=%d",
            path,
            len(text),
            max_chars,
        )
        info["truncated_from"] = len(text)
        text = text[:max_chars]
        info["chars"] = len(text)
    if len(text) < length + 1:
        raise ConfigError(
            f"text file {path!r} has {len(text)} characters; a window needs "
            f"dataset.sequence_length + 1 = {length + 1}; lower dataset.sequence_length"
        )
    vocab = Vocabulary(ASCII_SYMBOLS) if how == "ascii" else Vocabulary.from_texts([text])
    ids = vocab.encode(text)  # [chars]
    unknown = sorted({c for c in set(text) if c not in vocab.stoi})
    if unknown:
        logging.warning(
            "text file %s: %d characters outside the ASCII vocabulary (%s) map to <unk>; "
            "set dataset.vocabulary='file' to keep them",
            path,
            int(np.sum(ids == UNK)),
            "".join(unknown[:20]),
        )
        info["unknown_symbols"] = "".join(unknown)
    starts = np.arange(0, len(ids) - length, stride)  # [N]
    window = starts[:, None] + np.arange(length)[None, :]  # [N, L]
    info.update(vocab=list(vocab.itos), vocabulary=how, windows=len(starts))
    return Source(ids[window], ids[window + 1], "sequence", info=info)
