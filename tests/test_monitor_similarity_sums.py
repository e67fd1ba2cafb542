"""The hashing embedder's numpy sums (trestle.monitors.hashsums) against its plain ones:
the same vectors to the last bit, so the drift monitor decides the same either way."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_monitor_drift_golden import COSINES, REFERENCES, _texts
from trestle.monitors.similarity import HashingEmbedder, SparseVector, cosine

pytest.importorskip("numpy", reason="the embed extra brings numpy")

# code-flavoured text: identifiers in every case, digits, paths, repeats, non-ASCII
PIECES = st.sampled_from(
    [*"aAbBzZ_0190 .-/\n", "get", "HTTP", "Response", "the", "tests", "slug", "é", "\udcff"]
)
TEXTS = st.lists(PIECES, max_size=200).map("".join)
# 900 distinct words (aaa, aab, ...): a long reasoning's worth, every word new
NEW_WORDS = " ".join("".join(chr(97 + int(d)) for d in f"{i:03d}") for i in range(900))


def _same(plain: SparseVector, fast: SparseVector) -> None:
    assert fast.norm() == plain.norm()
    assert fast.stored() == plain.stored()
    assert list(fast.entries.items()) == list(plain.entries.items())  # values and order


def _cosines(embedder: HashingEmbedder, texts: list[str], others: list[str]) -> list[str]:
    vectors, references = embedder.embed(texts), embedder.embed(others)
    return [cosine(v, r).hex() for v in vectors for r in references]


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, other=TEXTS, dim=st.sampled_from([7, 64, 1 << 18, 1 << 32]))
def test_numpy_sums_give_the_plain_vectors_and_cosines_bit_for_bit(
    text: str, other: str, dim: int
) -> None:
    plain = HashingEmbedder(dim, vectorised=False)
    fast = HashingEmbedder(dim, vectorised=True)  # numpy for every text, short ones too
    assert fast.vectorised and not plain.vectorised
    ((p,), (f,)) = plain.embed([text]), fast.embed([text])
    assert isinstance(p, SparseVector) and isinstance(f, SparseVector)
    # cosines of arrays with arrays, arrays with a dict (as a vector whose entries were
    # read), and dicts with dicts
    expected = _cosines(plain, [text], [other, text])
    assert _cosines(fast, [text], [other, text]) == expected
    (g,) = fast.embed([other])
    assert isinstance(g, SparseVector)
    # plain floats, not numpy's: the drift monitor keeps scores in its saved state
    assert type(cosine(f, g)) is float and type(f.norm()) is float
    g.entries  # noqa: B018  # read: now a dict too
    assert [cosine(f, g).hex(), cosine(g, f).hex()] == [
        expected[0],
        cosine(*plain.embed([other, text])).hex(),
    ]
    _same(p, f)


def test_every_way_gives_the_pinned_cosines_cold_and_cached() -> None:
    for vectorised in (False, True, None):
        embedder = HashingEmbedder(vectorised=vectorised)
        for _ in range(2):
            references = embedder.embed(REFERENCES)
            found = [[cosine(v, r).hex() for r in references] for v in embedder.embed(_texts())]
            assert found == COSINES, vectorised


def test_by_default_numpy_sums_only_a_text_of_many_words_not_hashed_yet() -> None:
    embedder = HashingEmbedder()
    long, short = embedder.embed([NEW_WORDS, "read textkit/slug.py"])
    assert isinstance(long, SparseVector) and isinstance(short, SparseVector)
    assert long.arrays is not None and short.arrays is None
    # the same words, hashed by the plain sums a few at a time first: summed plainly
    known = NEW_WORDS.split()
    embedder = HashingEmbedder()
    embedder.embed([" ".join(known[i : i + 10]) for i in range(0, len(known), 10)])
    (again,) = embedder.embed([NEW_WORDS])
    assert isinstance(again, SparseVector) and again.arrays is None
    _same(again, long)


def test_a_word_repeated_and_a_long_text_of_new_words_agree() -> None:
    text = "slug slug slug Slug SLUG slug_utils " * 40 + NEW_WORDS
    for trigram_weight in (0.4, 0.0):
        plain = HashingEmbedder(trigram_weight=trigram_weight, vectorised=False)
        fast = HashingEmbedder(trigram_weight=trigram_weight, vectorised=True)
        ((p,), (f,)) = plain.embed([text]), fast.embed([text])
        assert isinstance(p, SparseVector) and isinstance(f, SparseVector)
        _same(p, f)


def test_without_numpy_the_plain_sums_decide_and_asking_for_numpy_names_the_extra() -> None:
    program = (
        "import json, sys\n"
        "sys.modules['numpy'] = None  # what an absent package looks like\n"
        "from trestle.core.errors import MissingExtraError\n"
        "from trestle.monitors.similarity import HashingEmbedder, cosine\n"
        "e = HashingEmbedder()\n"
        "refs = e.embed(json.loads(sys.argv[1]))\n"
        "found = [[cosine(v, r).hex() for r in refs] for v in e.embed(json.loads(sys.argv[2]))]\n"
        "try:\n"
        "    HashingEmbedder(vectorised=True)\n"
        "    said = ''\n"
        "except MissingExtraError as exc:\n"
        "    said = str(exc)\n"
        "print(json.dumps({'vectorised': e.vectorised, 'cosines': found, 'said': said}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, json.dumps(REFERENCES), json.dumps(_texts())],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["vectorised"] is False
    assert report["cosines"] == COSINES
    assert 'pip install "trestle-runtime[embed]"' in report["said"]
