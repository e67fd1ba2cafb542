"""The hashing embedder's features summed with numpy: the same vectors, bit for bit.

:class:`~trestle.monitors.similarity.HashingEmbedder` adds every word feature and
trigram feature of a text into its bucket, one Python operation each (about 1,300 for
1,000 characters), then normalises. This module does the same arithmetic over arrays,
when numpy is installed (the ``embed`` extra brings it): the trigrams' CRC-32s from a
lookup table over the words' bytes at once, the buckets grouped by one sort. The
floating-point operations are the pure code's, in its order, so the vectors are equal
to the last bit and a monitor decides the same with or without numpy:

- a bucket's features are summed one after another in the text's order (sorted by
  bucket, then position, and ``bincount`` adds sequentially);
- buckets come out in the order the pure code first touches them (its dict's order),
  and the sums of squares are added by Python's ``sum`` in that order;
- a word's weight is ``1 + math.log(count)`` from :mod:`math`, as in the pure code
  (numpy's ``log`` may differ in the last bit);
- a cosine's products are added by Python's ``sum`` in the order the plain code adds
  them (:meth:`BucketArrays.dot`).

The vector stays in arrays (:class:`BucketArrays`): a dict of a long text's ~2,000
entries costs more to build than comparing the text with a few references does.

``tests/test_monitor_similarity_sums.py`` holds the two to each other on random texts,
and ``tests/test_monitor_drift_golden.py`` pins the values either computes.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import cast

import numpy as np
import numpy.typing as npt

U32 = npt.NDArray[np.uint32]
F64 = npt.NDArray[np.float64]
Positions = npt.NDArray[np.intp]


def _crc_table() -> U32:
    """The table of the reflected CRC-32 (polynomial 0xEDB88320) that zlib uses."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
        table.append(crc)
    return np.array(table, dtype=np.uint32)


_TABLE = _crc_table()
_EIGHT = np.uint32(8)
_LOW = np.uint32(0xFF)
_HIGH = np.uint64(32)
_POSITION = np.uint64(0xFFFFFFFF)


class VectorisedSums:
    """A text's hashed vector summed over arrays, as the pure embedder sums it.

    Args:
        dim: the vector's length (at most 2**32: the CRCs are reduced in 32 bits).
        trigram_weight: the total weight of a word's trigrams relative to the word.
        word_crc: the CRC-32 a word's own feature starts from (its kind's prefix).
        gram_crc: the CRC-32 a trigram's feature starts from.
        max_cached_words: how many words' own CRC-32s are kept.
    """

    def __init__(
        self,
        dim: int,
        trigram_weight: float,
        *,
        word_crc: int,
        gram_crc: int,
        max_cached_words: int,
    ) -> None:
        if not 0 < dim <= 1 << 32:
            raise ValueError(f"dim must be in 1..2**32, not {dim}")
        self.dim = np.uint32(dim) if dim < 1 << 32 else None  # 2**32: every CRC is its bucket
        self.trigram_weight = trigram_weight
        self.word_crc = word_crc
        self.max_cached_words = max_cached_words
        # a trigram's CRC state after its first byte, for each byte: the start is fixed
        state = np.uint32(~gram_crc & 0xFFFFFFFF)
        self._after_first = _TABLE[(state ^ np.arange(256, dtype=np.uint32)) & _LOW] ^ (
            state >> _EIGHT
        )
        self._own: dict[str, int] = {}

    def vector(self, counted: Sequence[tuple[str, int]]) -> BucketArrays | None:
        """The normalised vector for ``counted`` (the text's words with their counts,
        sorted by word); None when a word is not ASCII (the pure code handles those: a
        trigram there is not three bytes) or the sums are all zero (nothing to normalise)."""
        if not counted:
            return None
        words = [word for word, _ in counted]
        padded = "^" + "$^".join(words) + "$"
        if not padded.isascii():
            return None
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        weights = np.array([1.0 if count == 1 else 1.0 + math.log(count) for _, count in counted])
        layout = _Layout(lengths)
        crcs = np.empty(layout.size, dtype=np.uint32)
        crcs[layout.own_at] = self._own_crcs(words)
        crcs[layout.is_trigram] = self._trigram_crcs(padded)[layout.trigram_starts]
        magnitudes = np.empty(layout.size, dtype=np.float64)
        magnitudes[layout.own_at] = weights
        # a word's share, weight * trigram_weight / n (left to right), on each of its n trigrams
        magnitudes[layout.is_trigram] = np.repeat(weights * self.trigram_weight / lengths, lengths)
        values = np.where(crcs >> np.uint32(31), -magnitudes, magnitudes)
        buckets = crcs if self.dim is None else crcs % self.dim
        return BucketArrays.normalised(*_sums_by_bucket(buckets, values))

    def _trigram_crcs(self, padded: str) -> U32:
        """The CRC-32 of the three bytes at each position of ``padded`` (those that
        straddle two words too: they are never picked)."""
        raw = np.frombuffer(padded.encode("ascii"), dtype=np.uint8).astype(np.uint32)
        state = self._after_first[raw[:-2]]
        state = _TABLE[(state ^ raw[1:-1]) & _LOW] ^ (state >> _EIGHT)
        state = _TABLE[(state ^ raw[2:]) & _LOW] ^ (state >> _EIGHT)
        crcs: U32 = ~state
        return crcs

    def _own_crcs(self, words: list[str]) -> list[int]:
        own = self._own
        found = list(map(own.get, words))
        if None not in found:
            return cast("list[int]", found)
        if len(own) + len(words) > self.max_cached_words:
            own.clear()
        start = self.word_crc
        for at, crc in enumerate(found):
            if crc is None:
                word = words[at]
                found[at] = own[word] = zlib.crc32(word.encode("ascii"), start)
        return cast("list[int]", found)  # every None replaced


class _Layout:
    """Where each feature sits in the pure code's order: per word, its own feature,
    then its trigrams' (a word of n characters has the n trigrams of ``^word$``)."""

    def __init__(self, lengths: npt.NDArray[np.int64]) -> None:
        count = len(lengths)
        before = np.cumsum(lengths) - lengths  # the trigrams of the words before each
        trigrams = int(before[-1] + lengths[-1])
        self.size = count + trigrams
        self.own_at = before + np.arange(count)
        self.is_trigram = np.ones(self.size, dtype=bool)
        self.is_trigram[self.own_at] = False
        # trigram t of word k starts in "^w0$^w1$..." at t + 2k (the "^$" of the words before)
        self.trigram_starts = np.repeat(2 * np.arange(count), lengths) + np.arange(trigrams)


def _sums_by_bucket(buckets: U32, values: F64) -> tuple[U32, F64, Positions]:
    """The distinct buckets in ascending order, each one's values summed one after
    another in the order they occur, and the order in which the buckets first occur
    (positions into the first two)."""
    # sorted by bucket, then position: each bucket's values stay in order (one sort of
    # distinct 64-bit keys is about 3x faster here than numpy's stable sort of the buckets)
    keys = np.sort((buckets.astype(np.uint64) << _HIGH) | np.arange(len(buckets), dtype=np.uint64))
    by_bucket = (keys & _POSITION).astype(np.intp)
    sorted_buckets = (keys >> _HIGH).astype(np.uint32)
    starts = np.empty(len(buckets), dtype=bool)
    starts[0] = True
    np.not_equal(sorted_buckets[1:], sorted_buckets[:-1], out=starts[1:])
    group = np.cumsum(starts) - 1
    # bincount adds each bin's weights one after another (typed as if it counted)
    sums = np.bincount(group, weights=values[by_bucket]).astype(np.float64, copy=False)
    first_touch = np.argsort(by_bucket[starts])  # each bucket's first position, ordered
    return sorted_buckets[starts], sums, first_touch


class BucketArrays:
    """A normalised hashed vector in arrays (a :class:`~trestle.monitors.similarity.StoredArrays`):
    its buckets ascending for lookups, and the order the plain code inserts them in."""

    def __init__(self, buckets: U32, values: F64, first_touch: Positions, norm: float) -> None:
        self.buckets = buckets  # ascending
        self.values = values
        self.first_touch = first_touch
        self.norm = norm  # what SparseVector.norm() sums to
        self.count = len(buckets)

    @classmethod
    def normalised(cls, buckets: U32, sums: F64, first_touch: Positions) -> BucketArrays | None:
        """The sums divided by their length as the plain code divides them (None when
        the length is zero, which the plain code leaves undivided)."""
        in_order = sums[first_touch]
        norm = math.sqrt(sum((in_order * in_order).tolist()))
        if norm == 0.0:
            return None
        unit = sums / norm
        kept = sums != 0.0
        if not kept.all():  # a bucket whose features cancelled out, dropped as it is there
            renumbered = np.cumsum(kept) - 1
            first_touch = renumbered[first_touch[kept[first_touch]]]
            buckets, unit = buckets[kept], unit[kept]
        in_order = unit[first_touch]
        return cls(buckets, unit, first_touch, math.sqrt(sum((in_order * in_order).tolist())))

    def in_order(self) -> tuple[U32, F64]:
        return self.buckets[self.first_touch], self.values[self.first_touch]

    def as_dict(self) -> dict[int, float]:
        buckets, values = self.in_order()
        return dict(zip(buckets.tolist(), values.tolist(), strict=True))

    def dot(self, indices: Sequence[int] | U32, values: Sequence[float] | F64) -> float:
        """Python's ``sum`` of ``v * self.get(i, 0.0)`` in the given order, as the plain
        cosine adds them (the products are the same IEEE multiplications)."""
        if len(indices) == 0:
            return 0.0
        wanted = np.asarray(indices, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.buckets, wanted), self.count - 1)
        found = np.where(self.buckets[at] == wanted, self.values[at], 0.0)
        products: list[float] = (np.asarray(values, dtype=np.float64) * found).tolist()
        return sum(products)
