"""How alike two texts are: a pluggable embedder and cosine similarity.

The drift monitor asks whether an action is about the step's objective. That needs a
similarity of short, code-flavoured texts (file paths, commands, identifiers, a line
of reasoning). Two embedders answer it:

- :class:`HashingEmbedder`, the default: no model, no dependency. Words and the parts
  of identifiers and paths (``textkit/slug_utils.py`` gives ``textkit``, ``slug``,
  ``utils``; ``parseHttpResponse`` gives ``parse``, ``http``, ``response``) are hashed
  into a fixed-size sparse vector, so texts that name the same things score high.
- :class:`WordLlamaEmbedder`, behind the ``embed`` extra: a small static sentence
  embedding model whose weights ship inside the ``wordllama`` wheel, so it loads
  offline and also knows that "network" and "download" are related.

Every embedder carries ``unrelated_below``: the cosine under which it calls two texts
unrelated. Scales differ (hashed features score 0 for texts with no word in common, a
sentence model rarely goes under 0.1), so thresholds travel with the embedder rather
than with each monitor.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import cache, lru_cache
from importlib import import_module
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, overload

from trestle.core.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    from trestle.monitors.hashsums import VectorisedSums

EMBEDDERS: tuple[str, ...] = ("hashing", "wordllama")


class Embedder(Protocol):
    """Turns texts into vectors whose cosine says how related the texts are.

    Embedders are deterministic: the same text always gives the same vector.
    """

    name: str
    unrelated_below: float  # cosine under which two texts count as unrelated

    def embed(self, texts: Sequence[str]) -> list[Sequence[float]]:
        """One vector per text, all of the same length."""
        ...


class StoredArrays(Protocol):
    """A sparse vector's entries held in arrays (:class:`~trestle.monitors.hashsums.BucketArrays`)
    rather than in a dict: building a dict of a long text's ~2,000 entries costs more than
    comparing the text with a few references does."""

    count: int  # how many entries are stored

    def as_dict(self) -> dict[int, float]:
        """The entries, in the order the plain code inserts them."""
        ...

    def in_order(self) -> tuple[Any, Any]:
        """The indices and values (array-likes), in the order of :meth:`as_dict`."""
        ...

    def dot(self, indices: Any, values: Any) -> float:
        """``sum(v * self.get(i, 0.0) for i, v in zip(indices, values))`` over two
        array-likes of the same length, to the last bit."""
        ...


class Foreseen(Protocol):
    """A text's vector being made elsewhere (:mod:`trestle.monitors.embedworker`)."""

    def result(self) -> Sequence[float] | None:
        """The vector, or None when it is not there in time (then made here)."""
        ...

    def give_up(self) -> None:
        """It will not be asked for."""
        ...


class Ready:
    """A vector made already (a :class:`Foreseen` that is there at once)."""

    def __init__(self, vector: Sequence[float]) -> None:
        self.vector = vector

    def result(self) -> Sequence[float]:
        return self.vector

    def give_up(self) -> None:
        pass


class SparseVector(Sequence[float]):
    """A fixed-length vector that stores only its non-zero entries.

    It reads as an ordinary sequence of floats (zeros where nothing is stored), and
    :func:`cosine` of two sparse vectors touches only what they store. Its entries are a
    dict, or arrays (``arrays``) made into that dict only when ``entries`` is read.
    """

    __slots__ = ("_entries", "_norm", "arrays", "dim")

    def __init__(
        self,
        dim: int,
        entries: dict[int, float] | None = None,
        *,
        norm: float | None = None,
        arrays: StoredArrays | None = None,
    ) -> None:
        if (entries is None) == (arrays is None):
            raise ValueError("a sparse vector takes its entries as a dict or as arrays")
        self.dim = dim
        self._entries = entries
        self.arrays = arrays
        self._norm = norm  # when given, what norm() would sum to

    @property
    def entries(self) -> dict[int, float]:
        """Index to value, in the order the embedder first touched each index."""
        if self._entries is None:
            assert self.arrays is not None  # one of the two is given
            self._entries = self.arrays.as_dict()
        return self._entries

    def stored(self) -> int:
        """How many entries it stores."""
        if self._entries is not None:
            return len(self._entries)
        assert self.arrays is not None  # one of the two is given
        return self.arrays.count

    def norm(self) -> float:
        """Its Euclidean length, summed once: a vector is compared with several."""
        if self._norm is None:
            self._norm = math.sqrt(sum(v * v for v in self.entries.values()))
        return self._norm

    def dot(self, small: SparseVector) -> float:
        """The dot product, summed in ``small``'s order over what ``small`` stores."""
        if self.arrays is not None:
            if small.arrays is not None:
                return self.arrays.dot(*small.arrays.in_order())
            entries = small.entries
            return self.arrays.dot(list(entries), list(entries.values()))
        large = self.entries
        return sum(v * large.get(i, 0.0) for i, v in small.entries.items())

    def __len__(self) -> int:
        return self.dim

    @overload
    def __getitem__(self, index: int) -> float: ...
    @overload
    def __getitem__(self, index: slice) -> list[float]: ...
    def __getitem__(self, index: int | slice) -> float | list[float]:
        if isinstance(index, slice):
            return [self.entries.get(i, 0.0) for i in range(*index.indices(self.dim))]
        if not -self.dim <= index < self.dim:
            raise IndexError(index)
        return self.entries.get(index % self.dim, 0.0)

    def __iter__(self) -> Iterator[float]:
        return (self.entries.get(i, 0.0) for i in range(self.dim))

    def __repr__(self) -> str:
        return f"SparseVector(dim={self.dim}, nonzero={len(self.entries)})"


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """The cosine of the angle between ``a`` and ``b``; 0.0 when either is all zeros."""
    if isinstance(a, SparseVector) and isinstance(b, SparseVector):
        small, large = (b, a) if b.stored() < a.stored() else (a, b)  # a when as long
        dot = large.dot(small)
        norm_a, norm_b = a.norm(), b.norm()
    else:
        dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
        norm_a = math.sqrt(math.fsum(x * x for x in a))
        norm_b = math.sqrt(math.fsum(y * y for y in b))
    if norm_a == 0.0 or norm_b == 0.0:
        return 0.0
    return dot / (norm_a * norm_b)


# Words that say nothing about what a text is about: English glue, the filler of an
# agent's reasoning, file extensions and the verbs of every shell session. Without
# them, "cat docs/index.md" and "cat textkit/slug.py" share nothing.
_STOPWORD_LIST = """
    a about above after again all also am an and any are as at be been before being
    but by can could did do does doing done for from had has have having he her here
    his how i if in into is it its itself just let lets me more most my no not now of
    off on once only or other our out over own same she should so some such than that
    the their them then there these they this those through to too under until up very
    was we were what when where which while who why will with would you your
    ok okay first next look see check seems need try going want think know sure make
    file files line lines code run running use using get got show shows found find
    py pyi txt md rst json yaml yml toml cfg ini js ts
    cat ls cd echo sed head tail grep nl wc sort xargs awk rn la true false none null
"""
_STOPWORDS = frozenset(_STOPWORD_LIST.split())
MAX_CACHED_WORDS = 1 << 16  # a word's hashed features, kept per embedder
# new words (not yet hashed by the plain sums) from which numpy's sums are the faster:
# the plain sums of words already hashed are cheap, and below this numpy's calls cost
# more than the hashing they save (on the shared trajectories, whose agents repeat their
# words, numpy's sums of every long text were 10% slower than the plain ones)
VECTORISED_FROM_NEW_WORDS = 64
MAX_FORESEEN = 16  # texts whose vectors are being made elsewhere, kept per embedder

# Splits camelCase and HTTPResponse-style runs: "parseHTTPResponse" -> parse HTTP Response.
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _stem(word: str) -> str:
    """A deliberately light stemmer: enough that "tests" meets "test", "fixed" meets "fix"."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """The content words of ``text``: identifier parts, lower-cased, stemmed, no stopwords.

    A whole identifier is kept beside its parts (``slug_utils`` gives ``slug_utils``,
    ``slug`` and ``utils``), so naming it exactly counts for more than sharing a part.
    """
    out: list[str] = []
    for identifier in _IDENTIFIER.findall(text):
        out.extend(_identifier_words(identifier))
    return out


def has_words(text: str) -> bool:
    """Whether ``text`` has a content word (:func:`words` is not empty), found by
    reading only as far as the first."""
    return any(_identifier_words(found[0]) for found in _IDENTIFIER.finditer(text))


@lru_cache(maxsize=1 << 16)
def _identifier_words(identifier: str) -> tuple[str, ...]:
    """One identifier's content words (see :func:`words`): cached, since an agent's
    texts name the same identifiers turn after turn."""
    if identifier.isalpha() and identifier.islower():  # a plain word, most of any text
        plain = len(identifier) > 1 and identifier not in _STOPWORDS
        return (_stem(identifier),) if plain else ()
    # underscores split it (no camel-case piece holds one), and a piece of digits
    # alone, as one that begins a part is, is dropped below
    # a piece's length and digits are its lower case's (the pieces are ASCII): only
    # the pieces kept are lowered
    parts = [p.lower() for p in _CAMEL.findall(identifier) if len(p) > 1 and not p.isdigit()]
    kept = [_stem(p) for p in parts if p not in _STOPWORDS]
    whole = identifier.lower().strip("_")
    if len(parts) > 1 and len(kept) > 1 and whole not in _STOPWORDS:
        kept.append(whole)
    return tuple(kept)


class HashingEmbedder:
    """Hashed word and identifier-part features in a sparse, L2-normalised vector.

    Each word weighs ``1 + log(count)``; its character trigrams add a lighter signal so
    ``slugify`` is near ``slug``. Features are hashed with CRC-32 (stable across
    processes, unlike ``hash()``) into ``dim`` buckets with a hashed sign, so collisions
    cancel out on average instead of adding up.

    Where numpy is installed (the ``embed`` extra brings it), the features are summed
    over arrays (:mod:`trestle.monitors.hashsums`): the same vectors to the last bit,
    about twice as fast on a text of new words.

    Args:
        dim: the vector's length (a power of two keeps buckets even).
        trigram_weight: the total weight of a word's trigrams relative to the word.
        vectorised: sum with numpy for every text (True: numpy must be installed), in
            plain Python (False), or with numpy where it is installed and the text has
            ``VECTORISED_FROM_NEW_WORDS`` words or more that the plain sums have not
            hashed yet (None).

    Raises:
        MissingExtraError: ``vectorised=True`` without numpy installed.
    """

    name = "hashing"
    unrelated_below = 0.1

    def __init__(
        self, dim: int = 1 << 18, trigram_weight: float = 0.4, *, vectorised: bool | None = None
    ) -> None:
        self.dim = dim
        self.trigram_weight = trigram_weight
        # a word's hashed buckets and signs: its own, then its trigrams'. Words recur
        # across an agent's turns, and a resumed run re-embeds all of them
        self._buckets: dict[str, tuple[tuple[int, float], tuple[tuple[int, float], ...]]] = {}
        # numpy is imported at the first text, not here: a run builds its monitors at
        # the start, and a plan without an agent step never embeds a text
        self._sums: VectorisedSums | None = None
        self._sums_unresolved = vectorised is not False
        self._always_vectorised = bool(vectorised)
        if vectorised and self._summer() is None:
            raise MissingExtraError("numpy", "embed")
        # texts whose vectors are being made ahead, elsewhere (see foresee)
        self._foreseen: dict[str, Foreseen] = {}

    @property
    def vectorised(self) -> bool:
        """Whether numpy sums texts here (every text, or those worth it: see ``vectorised``)."""
        return self._summer() is not None

    def _summer(self) -> VectorisedSums | None:
        if self._sums_unresolved:
            self._sums_unresolved = False
            self._sums = _vectorised_sums(self.dim, self.trigram_weight)
        return self._sums

    def embed(self, texts: Sequence[str]) -> list[Sequence[float]]:
        """One sparse vector per text (see the class docstring for its features)."""
        return [self._vector(text) for text in texts]

    def foresee(self, text: str, vector: Foreseen) -> None:
        """Take ``vector`` as ``text``'s when it is next embedded, if it is there by then
        (it is the same vector: made by this embedder's code with the same settings);
        the oldest of more than ``MAX_FORESEEN`` texts waiting is given up."""
        earlier = self._foreseen.pop(text, None)
        if earlier is not None:
            earlier.give_up()
        if len(self._foreseen) >= MAX_FORESEEN:
            self._foreseen.pop(next(iter(self._foreseen))).give_up()
        self._foreseen[text] = vector

    def _vector(self, text: str) -> SparseVector:
        if self._foreseen:
            foreseen = self._foreseen.pop(text, None)
            if foreseen is not None and (made := foreseen.result()) is not None:
                assert isinstance(made, SparseVector)  # made by this embedder's code
                return made
        counts = Counter(words(text))
        # sorted by word alone (each is there once), as sorting the (word, count) pairs
        # would, in a quarter of the time: a pair's comparison is a generic tuple's
        ordered = sorted(counts)
        counted = list(zip(ordered, map(counts.__getitem__, ordered), strict=True))
        summer = self._summer() if self._worth_vectorising(counted) else None
        if summer is not None:
            arrays = summer.vector(counted)
            if arrays is not None:
                return SparseVector(self.dim, norm=arrays.norm, arrays=arrays)
        entries: dict[int, float] = {}
        for word, count in counted:
            weight = 1.0 + math.log(count)
            (index, sign), grams = self._word_buckets(word)
            entries[index] = entries.get(index, 0.0) + sign * weight
            if grams:
                share = weight * self.trigram_weight / len(grams)
                for index, sign in grams:
                    entries[index] = entries.get(index, 0.0) + sign * share
        norm = math.sqrt(sum(v * v for v in entries.values()))
        if norm > 0.0:
            entries = {i: v / norm for i, v in entries.items() if v != 0.0}
        return SparseVector(self.dim, entries)

    def _worth_vectorising(self, counted: list[tuple[str, int]]) -> bool:
        """Whether numpy's sums are the faster for ``counted`` (both give the same vector)."""
        if self._always_vectorised:
            return True
        if len(counted) < VECTORISED_FROM_NEW_WORDS:
            return False
        hashed = self._buckets
        new = (word for word, _ in counted if word not in hashed)
        # enough once that many are found: the rest of a long text is not looked at
        return next(islice(new, VECTORISED_FROM_NEW_WORDS - 1, None), None) is not None

    def _word_buckets(self, word: str) -> tuple[tuple[int, float], tuple[tuple[int, float], ...]]:
        found = self._buckets.get(word)
        if found is None:
            if len(self._buckets) >= MAX_CACHED_WORDS:
                self._buckets.clear()
            own = zlib.crc32(word.encode("utf-8", "surrogatepass"), _WORD_CRC)
            grams = [zlib.crc32(gram, _GRAM_CRC) for gram in _trigrams(word)]
            dim = self.dim
            found = self._buckets[word] = (
                (own % dim, -1.0 if own >> 31 else 1.0),
                tuple([(d % dim, -1.0 if d >> 31 else 1.0) for d in grams]),
            )
        return found


# A feature is hashed with its kind's prefix ("w:" a word, "c:" a trigram) and its
# text, as one CRC-32 (the sign from its top bit): the prefix's CRC is carried on
_WORD_CRC, _GRAM_CRC = zlib.crc32(b"w:"), zlib.crc32(b"c:")


def _trigrams(word: str) -> list[bytes]:
    """The word's character trigrams, with ``^`` and ``$`` at its ends, as UTF-8."""
    padded = f"^{word}$"
    if padded.isascii():  # one byte a character: slice the bytes
        raw = padded.encode("ascii")
        return [raw[i : i + 3] for i in range(len(raw) - 2)]
    return [padded[i : i + 3].encode("utf-8", "surrogatepass") for i in range(len(padded) - 2)]


def _vectorised_sums(dim: int, trigram_weight: float) -> VectorisedSums | None:
    """The numpy summer for these settings, or None without numpy (or for a ``dim`` past
    32 bits, which the summer's CRCs do not reach)."""
    if not 0 < dim <= 1 << 32:
        return None
    try:
        from trestle.monitors.hashsums import VectorisedSums
    except ImportError:  # numpy is not installed: the plain sums, the same vectors
        return None
    return VectorisedSums(
        dim,
        trigram_weight,
        word_crc=_WORD_CRC,
        gram_crc=_GRAM_CRC,
        max_cached_words=MAX_CACHED_WORDS,
    )


class WordLlamaEmbedder:
    """The ``l2_supercat`` WordLlama model (256 dimensions), loaded from its own wheel.

    The weights and tokenizer ship inside the ``wordllama`` package, so loading reads
    only local files; downloads are disabled, and a package without its bundled files
    fails loudly instead of reaching the network.

    Raises:
        MissingExtraError: ``wordllama`` is not installed.
        ConfigError: the package lacks its bundled model files.
    """

    name = "wordllama"
    unrelated_below = 0.2

    def __init__(self) -> None:
        self._model = _wordllama_model()

    def embed(self, texts: Sequence[str]) -> list[Sequence[float]]:
        """One unit-length 256-dimensional vector per text."""
        if not texts:
            return []
        rows = self._model.embed(list(texts), norm=True)
        return [[float(x) for x in row] for row in rows.tolist()]


@cache
def _wordllama_model() -> Any:
    """The loaded model, once per process: runs share it (it is read-only)."""
    try:
        module = import_module("wordllama")
    except ImportError as exc:
        raise MissingExtraError("wordllama", "embed") from exc
    # The package's own lookup searches a "tokenizer" folder beside the module, but the
    # wheel ships "tokenizers"; its cache layout matches the wheel, so point the cache at
    # the package itself.
    bundled = Path(module.__file__ or "").parent
    try:
        return module.WordLlama.load(cache_dir=bundled, disable_download=True)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"the wordllama package at {str(bundled)!r} lacks its bundled model: {exc}"
        ) from exc


def embedder_named(name: str) -> Embedder:
    """The embedder called ``name``: ``"hashing"`` or ``"wordllama"``.

    Raises:
        ConfigError: the name is unknown.
        MissingExtraError: ``"wordllama"`` without the ``embed`` extra installed.
    """
    if name == "hashing":
        return HashingEmbedder()
    if name == "wordllama":
        return WordLlamaEmbedder()
    raise ConfigError(f"unknown embedder {name!r}; choose one of {list(EMBEDDERS)!r}")
