"""A character-level language-modelling corpus from a fixed probabilistic grammar, generated in
memory with integer arithmetic only, so it is the same bytes on every machine.

Text: paragraphs of 3 to 6 sentences, lowercase English-like words, ends with ``.``, ``!`` or
``?``, sentences separated by a space and paragraphs by a newline. The grammar (weights are
integers, every choice independent)::

    sentence  -> clause "."  (6) | clause ", " CONJ " " clause "."  (2) | clause "!"  (1)
               | "is " np " " ADJ "?"  (1)
    clause    -> np " " vp
    np        -> DET " " ADJ* NOUN [" " PREP " " DET " " ADJ* NOUN]   (phrase 1 in 6)
                 ADJ*: no adjective (3), one (2), two (1), each followed by " "
    vp        -> TVERB " " np (3) | IVERB (2) | IVERB " " ADV (1) | TVERB " " np " " ADV (1)

Words are drawn uniformly from the lists below (8 to 16 words each, disjoint, so the text
determines every choice). The stream starts at a paragraph's first character and is cut into
consecutive windows of ``T + 1`` characters overlapping by one: window ``k`` is
``stream[k*T : k*T + T + 1]``, its first ``T`` characters the inputs and its last ``T`` the
targets. The first :data:`TRAIN_SEQUENCES` windows are the training set, the next
:data:`TEST_SEQUENCES` the test set.

Randomness: ``np.random.default_rng(GRAMMAR_SEED)`` draws blocks of ``uint32``; a choice among
integer weights summing to ``w`` takes the next draw modulo ``w`` (a bias below ``1e-8``).
:data:`GRAMMAR_SHA256` checks the arrays; a mismatch is a bug in this module.

Sizes: ``V = 32`` characters (:data:`ALPHABET`), ``T = 64``, 8192 training and 1024 test
sequences. A loss of ``log V = 3.47`` nats per character is chance. The text determines every
choice, so the grammar's entropy rate is the choices' mean log-probability per character: 0.568
nats (0.82 bits), estimated over 2 million characters, the lowest loss a model can reach.
Empirical conditional entropies of the stream given the previous k characters, in nats: 3.04
(k = 0), 1.98 (1), 1.00 (2), 0.74 (3), 0.66 (4), 0.58 (8).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import torch

from lrgym.data.arrays import ArrayDataset, arrays_sha256
from lrgym.errors import DatasetCorruptError

ALPHABET = "\n .,?!abcdefghijklmnopqrstuvwxyz"
"""The ``V = 32`` characters; a token id is the character's index here."""

SEQUENCE_LENGTH = 64
"""``T``: characters per input (and per target) sequence."""

TRAIN_SEQUENCES = 8192
TEST_SEQUENCES = 1024
GRAMMAR_SEED = 20160212
"""Seed of :func:`numpy.random.default_rng` for the whole stream."""

GRAMMAR_SHA256 = "026730bce9204923063a96829ea5a79ea1e7f73df84cf1268aa60766bd66a93d"
"""SHA-256 of train_x, train_y, test_x, test_y (little-endian ``int64``, C order), in order."""

DET = ("the", "a", "my", "this", "that", "every", "some", "your")
ADJ = (
    *("small", "big", "red", "quick", "lazy", "brown", "quiet", "happy"),
    *("bright", "dark", "tall", "green", "cold", "gentle", "wild", "young"),
)
NOUN = (
    *("cat", "dog", "fox", "bird", "horse", "king", "queen", "child"),
    *("farmer", "zebra", "wizard", "river", "garden", "box", "jar", "book"),
)
TVERB = (
    *("saw", "liked", "chased", "found", "carried", "watched"),
    *("helped", "followed", "painted", "kept", "moved", "visited"),
)
IVERB = ("slept", "jumped", "waited", "sang", "laughed", "ran", "smiled", "vanished", "danced")
ADV = ("quickly", "slowly", "quietly", "loudly", "happily", "today", "again", "twice")
PREP = ("near", "under", "behind", "with", "beside", "over")
CONJ = ("and", "but", "so", "while")


class _Choices:
    """Integer choices from one seeded stream of ``uint32`` draws."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._draws: Iterator[int] = iter(())

    def pick(self, weights: tuple[int, ...]) -> int:
        """An index into ``weights``, drawn with probability proportional to its weight."""
        draw = next(self._draws, None)
        if draw is None:
            self._draws = iter(self._rng.integers(0, 2**32, size=1 << 16, dtype=np.uint64).tolist())
            draw = next(self._draws)
        r = draw % sum(weights)
        for index, weight in enumerate(weights):
            if r < weight:
                return index
            r -= weight
        raise AssertionError("unreachable")  # pragma: no cover

    def word(self, words: tuple[str, ...]) -> str:
        """One of ``words``, uniformly."""
        return words[self.pick((1,) * len(words))]


def _noun_phrase(c: _Choices, phrase: bool = True) -> str:
    adjectives = "".join(c.word(ADJ) + " " for _ in range(c.pick((3, 2, 1))))
    text = f"{c.word(DET)} {adjectives}{c.word(NOUN)}"
    if phrase and c.pick((5, 1)) == 1:
        text += f" {c.word(PREP)} {_noun_phrase(c, phrase=False)}"
    return text


def _clause(c: _Choices) -> str:
    subject, kind = _noun_phrase(c), c.pick((3, 2, 1, 1))
    if kind == 0:
        return f"{subject} {c.word(TVERB)} {_noun_phrase(c)}"
    if kind == 1:
        return f"{subject} {c.word(IVERB)}"
    if kind == 2:
        return f"{subject} {c.word(IVERB)} {c.word(ADV)}"
    return f"{subject} {c.word(TVERB)} {_noun_phrase(c)} {c.word(ADV)}"


def _sentence(c: _Choices) -> str:
    kind = c.pick((6, 2, 1, 1))
    if kind == 0:
        return _clause(c) + "."
    if kind == 1:
        return f"{_clause(c)}, {c.word(CONJ)} {_clause(c)}."
    if kind == 2:
        return _clause(c) + "!"
    return f"is {_noun_phrase(c)} {c.word(ADJ)}?"


def generate_text(length: int, seed: int = GRAMMAR_SEED) -> str:
    """The first ``length`` characters of the grammar's stream for ``seed``."""
    c, parts, size = _Choices(seed), [], 0
    while size < length:
        sentences = [_sentence(c) for _ in range(3 + c.pick((1, 1, 1, 1)))]
        paragraph = " ".join(sentences) + "\n"
        parts.append(paragraph)
        size += len(paragraph)
    return "".join(parts)[:length]


def encode(text: str) -> np.ndarray:
    """Token ids (``int64``) of ``text``, whose characters must all be in :data:`ALPHABET`."""
    table = np.full(128, -1, dtype=np.int64)
    table[np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)] = np.arange(len(ALPHABET))
    ids = table[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
    if (ids < 0).any():
        raise ValueError("text has characters outside ALPHABET")
    return ids


def decode(ids: torch.Tensor | np.ndarray) -> str:
    """The text of a 1-D sequence of token ids."""
    return "".join(ALPHABET[int(i)] for i in np.asarray(ids).reshape(-1))


def _windows(stream: np.ndarray, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    t = SEQUENCE_LENGTH
    starts = (first + np.arange(count))[:, None] * t + np.arange(t)[None, :]
    return stream[starts], stream[starts + 1]


@functools.cache
def load_grammar() -> ArrayDataset:
    """The grammar corpus: ``(8192, 64)`` training and ``(1024, 64)`` test sequences of
    ``int64`` token ids in ``[0, 32)``, targets the next characters; ``tokens=True``.

    Raises:
        DatasetCorruptError: the arrays differ from the pinned ones (a bug in this module).
    """
    total = TRAIN_SEQUENCES + TEST_SEQUENCES
    stream = encode(generate_text(total * SEQUENCE_LENGTH + 1))
    train_x, train_y = _windows(stream, 0, TRAIN_SEQUENCES)
    test_x, test_y = _windows(stream, TRAIN_SEQUENCES, TEST_SEQUENCES)
    found = arrays_sha256((train_x, train_y, test_x, test_y), ("<i8",) * 4)
    if found != GRAMMAR_SHA256:
        raise DatasetCorruptError(
            f"the generated grammar arrays have SHA-256 {found}, not the pinned "
            f"{GRAMMAR_SHA256}: a bug in lrgym.data.grammar (NumPy {np.__version__})."
        )
    return ArrayDataset.from_numpy(
        "grammar",
        (train_x, train_y, test_x, test_y),
        offset=[0.0],
        scale=[1.0],
        num_classes=len(ALPHABET),
        tokens=True,
    )
