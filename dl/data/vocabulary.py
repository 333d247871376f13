"""Token ids: the reserved ids and the `Vocabulary` that maps symbols to the ids after them.

``PAD = 0``, ``BOS = 1`` (start), ``EOS = 2`` (end), ``UNK = 3``. Models that
need the reserved ids (dl.models.seq2seq) take them as fields whose defaults
are these values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

PAD = 0
BOS = 1
EOS = 2
UNK = 3
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")


class Vocabulary:
    """Maps characters (or tokens) to ids, with ``PAD, BOS, EOS, UNK`` reserved at ids 0..3.

    Example::

        vocab = Vocabulary("abc")
        ids = vocab.encode("cab", add_bos=True, add_eos=True, max_len=8)  # padded with PAD
        vocab.decode(ids)  # -> "cab"

    Args:
        tokens: The symbols, in id order (duplicates and the reserved strings are skipped). A
            string is read character by character.
        separator: Joins decoded symbols (``""`` for characters, ``" "`` for words).
    """

    def __init__(self, tokens: Iterable[str], separator: str = ""):
        self.separator = separator
        self.itos: list[str] = list(SPECIAL_TOKENS)
        for token in tokens:
            if token not in self.itos:
                self.itos.append(token)
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def from_texts(cls, texts: Iterable[Sequence[str]], separator: str = "") -> Vocabulary:
        """Builds a vocabulary of every symbol in ``texts``, sorted.

        Args:
            texts: Strings (characters are symbols) or sequences of tokens.
            separator: See the class docstring.

        Returns:
            The vocabulary.
        """
        return cls(sorted({symbol for text in texts for symbol in text}), separator=separator)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def size(self) -> int:
        """Number of ids, reserved ones included."""
        return len(self.itos)

    def encode(
        self,
        text: Sequence[str],
        *,
        add_bos: bool = False,
        add_eos: bool = False,
        max_len: int | None = None,
        truncate: bool = False,
    ) -> np.ndarray:
        """Converts a sequence of symbols to ids; unknown symbols become ``UNK``.

        Args:
            text: A string (one symbol per character) or a sequence of tokens.
            add_bos: Prepend ``BOS``.
            add_eos: Append ``EOS``.
            max_len: If given, the result is padded with ``PAD`` to exactly ``max_len`` ids.
            truncate: With ``max_len``, drop trailing symbols (``BOS``/``EOS`` are kept) instead
                of raising.

        Returns:
            int32 ids ``[n]`` (``[max_len]`` when given).

        Raises:
            ValueError: For an empty ``text``, or one longer than ``max_len`` (``BOS``/``EOS``
                included) when ``truncate`` is False.
        """
        if len(text) == 0:
            raise ValueError("cannot encode an empty sequence")
        body = [self.stoi.get(symbol, UNK) for symbol in text]
        prefix = [BOS] if add_bos else []
        suffix = [EOS] if add_eos else []
        if max_len is not None:
            total = len(prefix) + len(body) + len(suffix)
            if total > max_len:
                if not truncate:
                    raise ValueError(
                        f"sequence of length {total} (BOS/EOS included) exceeds max_len={max_len}"
                    )
                room = max_len - len(prefix) - len(suffix)
                if room < 1:
                    raise ValueError(f"max_len={max_len} leaves no room for any symbol")
                body = body[:room]
        ids = prefix + body + suffix
        if max_len is not None:
            ids = ids + [PAD] * (max_len - len(ids))
        return np.asarray(ids, dtype=np.int32)

    def encode_batch(self, texts: Sequence[Sequence[str]], max_len: int, **kwargs) -> np.ndarray:
        """Encodes several sequences into one ``[n, max_len]`` int32 array.

        Args:
            texts: The sequences.
            max_len: Padded length.
            **kwargs: Passed to ``encode`` (``add_bos``, ``add_eos``, ``truncate``).

        Returns:
            int32 ids ``[n, max_len]``.
        """
        return np.stack([self.encode(t, max_len=max_len, **kwargs) for t in texts])

    def decode_tokens(self, ids: Iterable[int]) -> list[str]:
        """Converts ids to symbols, stopping at the first ``EOS`` and dropping ``PAD``/``BOS``.

        Args:
            ids: 1-D ids (list, numpy or jax array).

        Returns:
            The symbols (``UNK`` decodes to ``"<unk>"``).

        Raises:
            ValueError: If an id is outside ``[0, size)``.
        """
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        for i in ids:
            if not 0 <= i < self.size:
                raise ValueError(f"token id {i} is outside the vocabulary of size {self.size}")
        out = []
        for i in ids:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.itos[i])
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Like ``decode_tokens``, joined with ``separator``.

        Args:
            ids: 1-D ids.

        Returns:
            The decoded text.
        """
        return self.separator.join(self.decode_tokens(ids))

    def decode_batch(self, ids: Any) -> list[str]:
        """Decodes every row of ``[n, length]`` ids."""
        return [self.decode(row) for row in np.asarray(ids)]


__all__ = ["BOS", "EOS", "PAD", "SPECIAL_TOKENS", "UNK", "Vocabulary"]
