"""Token sequence sets: text-to-text tasks (`addition`, `dates`) and the helpers of token data.

Generated sets depend on their config and seed only. Token sets have kind "sequence"
and fixed-shape int32 fields, so batches are gathered by index like any other set:

  seq2seq (`addition`, `dates`):
    x: source ids [examples, S]: the source, EOS, then PAD.
    extra["tgt_in"]: decoder inputs [examples, T]: BOS, the target, then PAD.
    y: target ids [examples, T]: the target, EOS, then PAD.
  char-LM (`text:PATH`, dl/data/text_windows.py):
    x: [examples, L] windows of the text; y: [examples, L] the next character at each
    position.

Vocabularies are lists of symbols in id order with the reserved `<pad> <bos> <eos> <unk>`
at ids 0-3 (`dl.data.vocabulary.Vocabulary`), stored in info["src_vocab"] and
info["tgt_vocab"] (seq2seq) or info["vocab"] (char-LM). They are fixed alphabets, so a
model's vocabulary sizes do not depend on which examples were drawn; the configs set them
(`model.src_vocab_size`, `model.tgt_vocab_size`, `model.vocab_size`) and the sequence task
checks them against the data.

Token ids must not be standardized: token sets require `dataset.standardize = "none"`.
"""

from __future__ import annotations

import datetime

import numpy as np

from dl.config import option
from dl.data.source import Source, num_samples
from dl.data.vocabulary import BOS, EOS, PAD, SPECIAL_TOKENS, UNK, Vocabulary
from dl.errors import ConfigError

__all__ = [
    "BOS",
    "DATE_FORMATS",
    "EOS",
    "PAD",
    "SPECIAL_TOKENS",
    "UNK",
    "Vocabulary",
    "addition",
    "check_ids",
    "dates",
    "encode_padded",
    "format_date",
    "require_unstandardized",
]

DIGITS = "0123456789"
ADDITION_SOURCE_SYMBOLS = DIGITS + "+"
ADDITION_TARGET_SYMBOLS = DIGITS

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Input formats of the date task; each maps a date to its text.
DATE_FORMATS = {
    "day_month_year": lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    "mon_day_year": lambda d: f"{MONTHS[d.month - 1][:3]} {d.day}, {d.year}",
    "month_day_year": lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    "day_mon_year": lambda d: f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}",
    "dd/mm/yyyy": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",
    "dd.mm.yyyy": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    "weekday_day_month_year": lambda d: (
        f"{WEEKDAYS[d.weekday()]}, {d.day} {MONTHS[d.month - 1]} {d.year}"
    ),
    "wkd_mon_day_year": lambda d: (
        f"{WEEKDAYS[d.weekday()][:3]}, {MONTHS[d.month - 1][:3]} {d.day}, {d.year}"
    ),
}
DATE_SOURCE_SYMBOLS = "".join(sorted(set(DIGITS + " ,./" + "".join(MONTHS + WEEKDAYS))))
DATE_TARGET_SYMBOLS = DIGITS + "-"


def require_unstandardized(cfg, name: str) -> None:
    """Refuses a token set whose config asks for standardization (ids are not features)."""
    how = option(cfg, "standardize", "none")
    if how not in ("none", False):
        raise ConfigError(
            f"dataset {name!r} holds token ids, which must not be standardized; set "
            f"dataset.standardize='none' (got {how!r})"
        )


def check_ids(ids: np.ndarray, vocab_size: int, what: str) -> None:
    """Checks that every token id lies in [0, vocab_size).

    Args:
      ids: int token ids of any shape.
      vocab_size: number of ids in the vocabulary.
      what: names the ids in the message, e.g. "dataset 'addition' field 'x'".

    Raises:
      ConfigError: naming the first id outside the vocabulary.
    """
    ids = np.asarray(ids)
    bad = (ids < 0) | (ids >= vocab_size)
    if np.any(bad):
        first = int(ids[bad].reshape(-1)[0])
        raise ConfigError(
            f"{what} holds token id {first}, outside the vocabulary of {vocab_size} ids "
            f"(0..{vocab_size - 1}); {int(bad.sum())} ids are out of range"
        )


def encode_padded(
    vocab: Vocabulary,
    texts: list[str],
    max_len: int,
    *,
    add_bos: bool = False,
    add_eos: bool = False,
    what: str = "sequence",
    length_field: str = "",
) -> np.ndarray:
    """Encodes texts into one [len(texts), max_len] int32 array padded with PAD.

    Args:
      vocab: the vocabulary.
      texts: the strings, one symbol per character.
      max_len: ids per row, BOS and EOS included.
      add_bos: start each row with BOS.
      add_eos: end each text with EOS.
      what: names the texts in messages.
      length_field: the config field that sets max_len, named in messages.

    Returns:
      int32 ids [len(texts), max_len].

    Raises:
      ConfigError: for an empty text or one that does not fit max_len.
    """
    extra = int(add_bos) + int(add_eos)
    for i, text in enumerate(texts):
        if len(text) == 0:
            raise ConfigError(f"{what} {i} is empty; every sequence needs at least one symbol")
        if len(text) + extra > max_len:
            hint = f"; raise dataset.{length_field}" if length_field else ""
            raise ConfigError(
                f"{what} {text!r} needs {len(text) + extra} tokens (with "
                f"{'BOS/EOS' if extra == 2 else 'BOS' if add_bos else 'EOS'}), more than the "
                f"maximum of {max_len}{hint}"
            )
    return vocab.encode_batch(texts, max_len, add_bos=add_bos, add_eos=add_eos)


def _max_length(cfg, field: str, needed: int, longest: str) -> int:
    """The configured length (0: as long as the longest sequence needs)."""
    given = int(option(cfg, field, 0) or 0)
    if given < 0:
        raise ConfigError(f"dataset.{field} must be >= 0 (0 fits the data), got {given}")
    if given and given < needed:
        raise ConfigError(
            f"dataset.{field}={given} is shorter than the longest sequence, {longest!r} "
            f"({needed} tokens with BOS/EOS); set at least {needed}, or 0 to fit the data"
        )
    return given or needed


def seq2seq_source(
    pairs: list[tuple[str, str]],
    src_vocab: Vocabulary,
    tgt_vocab: Vocabulary,
    cfg,
    name: str,
    info: dict,
) -> Source:
    """A token Source of (source text, target text) pairs.

    Args:
      pairs: the examples.
      src_vocab: vocabulary of the sources.
      tgt_vocab: vocabulary of the targets.
      cfg: dataset config: max_source_length, max_target_length (0 fits the data;
        counted with EOS, and for targets with BOS or EOS).
      name: the dataset's name, for messages.
      info: description stored with the run; the vocabularies are added.

    Returns:
      The Source: x [N, S], y [N, T] and extra["tgt_in"] [N, T], all int32.
    """
    if not pairs:
        raise ConfigError(f"dataset {name!r} has no examples; set dataset.num_samples >= 1")
    srcs, tgts = [p[0] for p in pairs], [p[1] for p in pairs]
    long_src, long_tgt = max(srcs, key=len), max(tgts, key=len)
    s = _max_length(cfg, "max_source_length", len(long_src) + 1, long_src)
    t = _max_length(cfg, "max_target_length", len(long_tgt) + 1, long_tgt)
    x = encode_padded(src_vocab, srcs, s, add_eos=True, what=f"{name} source")
    y = encode_padded(tgt_vocab, tgts, t, add_eos=True, what=f"{name} target")
    tgt_in = encode_padded(tgt_vocab, tgts, t, add_bos=True, what=f"{name} target")
    for field, ids, vocab in (("x", x, src_vocab), ("y", y, tgt_vocab)):
        if np.any(ids == UNK):
            raise ConfigError(f"dataset {name!r} field {field!r} has symbols outside its alphabet")
        check_ids(ids, vocab.size, f"dataset {name!r} field {field!r}")
    info = dict(info)
    info.update(
        src_vocab=list(src_vocab.itos),
        tgt_vocab=list(tgt_vocab.itos),
        max_source_length=s,
        max_target_length=t,
        examples=[list(p) for p in pairs[:3]],
    )
    return Source(x, y, "sequence", info=info, extra={"tgt_in": tgt_in})


def addition(cfg) -> Source:
    """Integer addition as text: "123+45" -> "168".

    Fields: num_samples (distinct pairs), max_digits (operands have 1..max_digits digits,
    the digit count drawn uniformly, then the value), seed, max_source_length,
    max_target_length.

    Returns:
      A seq2seq token Source.
    """
    require_unstandardized(cfg, "addition")
    n = num_samples(cfg, 20000, "addition")
    digits = int(option(cfg, "max_digits", 3))
    if not 1 <= digits <= 9:
        raise ConfigError(f"dataset.max_digits must be in 1..9, got {digits}")
    possible = (10**digits) ** 2
    if n > possible // 2:
        raise ConfigError(
            f"dataset.num_samples={n} is too many distinct pairs of numbers with at most "
            f"{digits} digits ({possible} exist); use at most {possible // 2}"
        )
    rng = np.random.default_rng(int(option(cfg, "seed", 0)))
    seen: set[tuple[int, int]] = set()
    pairs: list[tuple[int, int]] = []
    while len(pairs) < n:
        count = rng.integers(1, digits + 1, size=(2, n))
        low = np.where(count == 1, 0, 10 ** (count - 1))
        values = rng.integers(low, 10**count)  # [2, n]
        for a, b in zip(values[0].tolist(), values[1].tolist(), strict=True):
            if (a, b) not in seen and len(pairs) < n:
                seen.add((a, b))
                pairs.append((a, b))
    texts = [(f"{a}+{b}", str(a + b)) for a, b in pairs]
    return seq2seq_source(
        texts,
        Vocabulary(ADDITION_SOURCE_SYMBOLS),
        Vocabulary(ADDITION_TARGET_SYMBOLS),
        cfg,
        "addition",
        {"source": "addition", "max_digits": digits},
    )


def format_date(date: datetime.date, fmt: str) -> str:
    """Writes a date in one of DATE_FORMATS (English month and weekday names)."""
    if fmt not in DATE_FORMATS:
        raise ConfigError(f"unknown date format {fmt!r}; known formats: {', '.join(DATE_FORMATS)}")
    return DATE_FORMATS[fmt](date)


def dates(cfg) -> Source:
    """Date-format translation: "25 November 2026", "Nov 25, 2026", ... -> "2026-11-25".

    Fields: num_samples (distinct (date, format) pairs), min_year, max_year, formats (names
    of DATE_FORMATS; empty for all), seed, max_source_length, max_target_length.

    Returns:
      A seq2seq token Source; info["formats"] lists the formats used.
    """
    require_unstandardized(cfg, "dates")
    n = num_samples(cfg, 20000, "dates")
    lo, hi = int(option(cfg, "min_year", 1950)), int(option(cfg, "max_year", 2049))
    if not 1 <= lo <= hi <= 9999:
        raise ConfigError(
            f"dataset years must satisfy 1 <= min_year <= max_year <= 9999: {lo}..{hi}"
        )
    formats = list(option(cfg, "formats", ()) or DATE_FORMATS)
    unknown = [f for f in formats if f not in DATE_FORMATS]
    if unknown:
        raise ConfigError(
            f"unknown date formats {unknown}; known formats: {', '.join(DATE_FORMATS)}"
        )
    first = datetime.date(lo, 1, 1)
    days = (datetime.date(hi, 12, 31) - first).days + 1
    if n > days * len(formats):
        raise ConfigError(
            f"dataset.num_samples={n} exceeds the {days * len(formats)} distinct (date, format) "
            f"pairs of {lo}..{hi} in {len(formats)} formats"
        )
    rng = np.random.default_rng(int(option(cfg, "seed", 0)))
    picks = rng.choice(days * len(formats), size=n, replace=False)
    texts = []
    for p in picks.tolist():
        day, f = divmod(p, len(formats))
        date = first + datetime.timedelta(days=day)
        texts.append((format_date(date, formats[f]), date.isoformat()))
    return seq2seq_source(
        texts,
        Vocabulary(DATE_SOURCE_SYMBOLS),
        Vocabulary(DATE_TARGET_SYMBOLS),
        cfg,
        "dates",
        {"source": "dates", "years": [lo, hi], "formats": formats},
    )
