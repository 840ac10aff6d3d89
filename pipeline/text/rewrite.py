"""Rewrite-tolerant text features and the sentence-alignment check behind the ``rewrite`` duplicate kind.

A spun or machine-translated copy replaces many words, so most word shingles change; what
survives is the *set of content words per sentence* once stemmed, names spelt one way, and
numbers written one way. A document becomes:

- its sentences (newlines, then ``. ! ?``), each a set of 16-bit *term* ids: content words
  (no stop words, at least 3 letters) stemmed with Snowball (PyStemmer), then reduced to a
  spelling skeleton that absorbs common transliteration drift (accents, ``y``/``i``,
  ``ph``/``f``, ``c``/``k``, doubled letters); numbers with thousands separators removed,
  number words as digits, ``%`` / ``percent`` / ``per cent`` dropped, ``m`` / ``mn`` as ``million``;
- per term, whether it is a named entity or number (a capitalised word not opening its
  sentence, or digits), and per sentence whether it holds quoted speech.

`align` compares two such documents sentence by sentence (cosine of the term sets, which
also credits merged and split sentences; terms recurring in many sentences, such as the
story's main names, left out), keeps the pairs that follow the story's order (a longest
non-decreasing run: template-like sentences of different stories match out of order), and
returns which sentences align and the share of each document's terms in aligned sentences
(coverage). `Alignment.verdict` says ``rewrite`` (both coverages at least 0.45, unless the
overlap is a block of near-verbatim sentences only: a live blog's shared header and lead),
``related`` (at least three aligned sentences, two near-verbatim: reused background) or nothing. Only the term ids and sentence lengths are needed of the earlier
document, so the persistent index keeps exactly those (capped at MAX_TERMS per document).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
import zlib
from dataclasses import dataclass

import numpy as np
import Stemmer

#: Terms kept per document (whole sentences, in text order): 2 bytes each in the index. 320 terms
#: hold ~640 words of news text, the median article of the shared benchmark sets; longer articles
#: are compared on their first ~640 words, which is where copies and their originals agree most.
MAX_TERMS = 320
#: Sentences kept per document (their term counts are stored as one byte each).
MAX_SENTENCES = 64
#: Sentences with fewer terms are skipped ("Share this", "Read more"): they align by chance.
MIN_SENTENCE_TERMS = 3

#: Two sentences align when the cosine of their term sets reaches this and they share
#: MIN_SHARED terms. A 40% word substitution leaves ~0.5-0.6; unrelated sentences naming the
#: same people ~0.1-0.25 (benchmarks/bench_dedupe.py, rewrite section).
SENTENCE_COSINE = 0.4
MIN_SHARED = 3
#: A rewrite: both documents have at least this share of their terms in aligned sentences,
#: and at least MIN_ALIGNED sentences align. Follow-ups reusing 15-45% of an earlier story
#: stay below it on their own side.
REWRITE_COVERAGE = 0.45
MIN_ALIGNED = 3
#: A term in at least COMMON_SHARE of a document's sentences (and at least COMMON_MIN) is left out of
#: sentence comparison (see `align`).
COMMON_SHARE, COMMON_MIN = 0.2, 3
#: Related (same story, other text): at least RELATED_ALIGNED aligned sentences, RELATED_VERBATIM of
#: them near-verbatim (cosine >= RELATED_COSINE): reused background, a live blog's shared lead.
#: Looser rules chained nearly every story of a topic in the template-built speed corpus.
RELATED_ALIGNED, RELATED_VERBATIM, RELATED_COSINE = 3, 2, 0.8
#: Below this coverage, an alignment whose pairs are at least SHARED_BLOCK_VERBATIM near-verbatim is
#: a shared block, not a rewrite (live-blog updates sharing header and lead merged without this rule).
SHARED_BLOCK_COVERAGE, SHARED_BLOCK_VERBATIM = 0.7, 0.8

STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "aren",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "cannot",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "even",
        "ever",
        "every",
        "few",
        "for",
        "from",
        "further",
        "get",
        "got",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "however",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "last",
        "least",
        "less",
        "let",
        "like",
        "made",
        "make",
        "many",
        "may",
        "me",
        "might",
        "more",
        "most",
        "much",
        "must",
        "my",
        "myself",
        "near",
        "new",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "one",
        "only",
        "or",
        "other",
        "ought",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "per",
        "percent",
        "cent",
        "put",
        "said",
        "same",
        "say",
        "says",
        "she",
        "should",
        "since",
        "so",
        "some",
        "still",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "though",
        "through",
        "thus",
        "to",
        "too",
        "under",
        "until",
        "up",
        "upon",
        "us",
        "very",
        "via",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "whether",
        "which",
        "while",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "within",
        "without",
        "would",
        "yet",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "year",
        "years",
        "told",
        "tell",
        "according",
        "also",
    ]
)
_NUMBER_WORDS = {
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "m": "million",
    "mn": "million",
    "mln": "million",
    "bn": "billion",
    "b": "billion",
    "k": "thousand",
}
_WORD = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’»]?\s+")
_QUOTE = re.compile(r"[\"“”«»„]")
_SKELETON = (("ph", "f"), ("ou", "u"), ("dh", "d"), ("kh", "h"), ("y", "i"), ("c", "k"), ("q", "k"), ("w", "v"))
_DOUBLE = re.compile(r"(.)\1+")
_stemmer = Stemmer.Stemmer("english")
_term_cache: dict[str, int] = {}


def _fold(word: str) -> str:
    """Lower case without accents (NFKD, combining marks dropped): 'Zelenskyy' and 'Zélenskyy' agree."""
    if word.isascii():
        return word.lower()
    return "".join(c for c in unicodedata.normalize("NFKD", word.lower()) if not unicodedata.combining(c))


def _number(token: str) -> str:
    """One spelling per number: '1,500' and '1500' agree, '2.50' is '2.5'."""
    parts = re.split(r"[.,]", token)
    if len(parts) > 1 and all(len(p) == 3 for p in parts[1:]):
        return "".join(parts)  # thousands separators
    if len(parts) == 2:
        frac = parts[1].rstrip("0")
        return parts[0] + ("." + frac if frac else "")
    return token


def _term(word: str) -> int:
    """The 16-bit term id of a word, or -1 for a stop word / too short (cached per spelling)."""
    got = _term_cache.get(word)
    if got is not None:
        return got
    if word[0].isdigit():
        value = zlib.crc32(_number(word).encode()) & 0xFFFF
    else:
        low = _fold(word)
        low = _NUMBER_WORDS.get(low, low)
        if low.isdigit() or low in ("million", "billion", "thousand"):
            value = zlib.crc32(low.encode()) & 0xFFFF
        elif len(low) < 3 or low in STOP_WORDS:
            value = -1
        else:
            skel = _stemmer.stemWord(low)
            for a, b in _SKELETON:
                skel = skel.replace(a, b)
            skel = _DOUBLE.sub(r"\1", skel)
            if len(skel) > 4 and skel[-1] == "i":
                skel = skel[:-1]  # -sky / -skiy / -skyy
            value = zlib.crc32(skel.encode()) & 0xFFFF
    if len(_term_cache) < 1_000_000:  # bounded: a long-running worker meets an open vocabulary
        _term_cache[word] = value
    return value


@dataclass
class Features:
    """One document's rewrite features: term ids per sentence."""

    terms: np.ndarray  # uint16, the sentences' term ids back to back (each sentence's set, in first-seen order)
    lens: np.ndarray  # uint8, terms per kept sentence
    where: list[int]  # per kept sentence: its position among `sentences_of(text)`


def sentences_of(text: str) -> list[str]:
    """Paragraphs split into sentences (after . ! ? and a space)."""
    out: list[str] = []
    for para in text.split("\n"):
        out.extend(s for s in _SENTENCE_END.split(para.strip()) if s)
    return out


def _kept(text: str, max_terms: int):
    """(position among `sentences_of(text)`, tokens, term ids, kept term ids) of the sentences a document keeps."""
    total = count = 0
    lookup = _term_cache.get
    for position, sentence in enumerate(sentences_of(text)):
        tokens = _WORD.findall(sentence)
        ids = list(map(lookup, tokens))  # C-speed for words met before (nearly all of them)
        if None in ids:
            ids = [_term(t) if v is None else v for t, v in zip(tokens, ids)]
        unique = dict.fromkeys(ids)
        unique.pop(-1, None)
        if len(unique) < MIN_SENTENCE_TERMS:
            continue
        if total + len(unique) > max_terms or count >= MAX_SENTENCES:
            return
        kept = list(unique)[:255]
        total += len(kept)
        count += 1
        yield position, tokens, ids, kept


def features(text: str, *, max_terms: int = MAX_TERMS) -> Features:
    """The rewrite features of a text: whole sentences, in order, until `max_terms` terms."""
    terms: list[int] = []
    lens: list[int] = []
    where: list[int] = []
    for position, _, _, kept in _kept(text, max_terms):
        terms.extend(kept)
        lens.append(len(kept))
        where.append(position)
    return Features(np.array(terms, dtype=np.uint16), np.array(lens, dtype=np.uint8), where)


@dataclass
class Alignment:
    """Which sentences of A align with which of B, and how much of each document they cover."""

    pairs: list[tuple[int, int, float]]  # (sentence of A, best sentence of B, cosine), A's order
    coverage_a: float
    coverage_b: float
    shared_terms: np.ndarray  # term ids of A found anywhere in B

    @property
    def score(self) -> float:
        """The similarity that decides: the smaller of the two coverages."""
        return min(self.coverage_a, self.coverage_b)

    def verdict(self) -> str | None:
        """'rewrite', 'related' or None."""
        verbatim = sum(c >= RELATED_COSINE for _, _, c in self.pairs)
        # A modest overlap made only of near-verbatim sentences is a shared block (a live blog's header
        # and lead, reused background), not a rewritten copy: a rewrite rewrites some of what it keeps.
        shared_block = self.score < SHARED_BLOCK_COVERAGE and verbatim >= SHARED_BLOCK_VERBATIM * len(self.pairs)
        if len(self.pairs) >= MIN_ALIGNED and self.score >= REWRITE_COVERAGE and not shared_block:
            return "rewrite"
        if len(self.pairs) >= RELATED_ALIGNED and verbatim >= RELATED_VERBATIM:
            return "related"
        return None


def _monotone(seq: np.ndarray) -> np.ndarray:
    """Positions of a longest non-decreasing subsequence of `seq` (patience sorting, O(n log n))."""
    tails: list[int] = []  # tails[k]: smallest last value of a subsequence of length k + 1
    tail_pos: list[int] = []
    back = [-1] * len(seq)
    for pos, v in enumerate(seq.tolist()):
        k = bisect.bisect_right(tails, v)
        if k == len(tails):
            tails.append(v)
            tail_pos.append(pos)
        else:
            tails[k], tail_pos[k] = v, pos
        back[pos] = tail_pos[k - 1] if k else -1
    out: list[int] = []
    pos = tail_pos[-1] if tail_pos else -1
    while pos >= 0:
        out.append(pos)
        pos = back[pos]
    return np.array(out[::-1], dtype=np.int64)


def align(a_terms: np.ndarray, a_lens: np.ndarray, b_terms: np.ndarray, b_lens: np.ndarray) -> Alignment:
    """Sentence alignment of A against B by the cosine of their sentences' term sets.

    Terms recurring in many sentences of either document are left out of the sentence
    comparison: they say which story a sentence belongs to, not which sentence it is, and
    different stories about the same people share them in nearly every sentence.
    Coverage is still measured on all of each document's terms. One sort of both
    documents' terms finds the shared ones (~50 us for two 300-term texts).
    """
    empty = Alignment([], 0.0, 0.0, np.zeros(0, dtype=np.uint16))
    na, nb = len(a_lens), len(b_lens)
    if not na or not nb:
        return empty
    n_a = len(a_terms)
    values = np.concatenate([a_terms, b_terms])
    sentence = np.concatenate(
        [np.repeat(np.arange(na), a_lens.astype(np.int64)), np.repeat(np.arange(nb), b_lens.astype(np.int64))]
    )
    order = np.argsort(values, kind="stable")  # stable: within a term, A's occurrences come first
    v, owner, sent = values[order], order >= n_a, sentence[order]
    starts = np.flatnonzero(np.concatenate([[True], v[1:] != v[:-1]]))
    run = np.cumsum(np.concatenate([[True], v[1:] != v[:-1]])) - 1
    in_b = np.bincount(run, weights=owner, minlength=len(starts)).astype(np.int64)
    in_a = np.bincount(run, minlength=len(starts)) - in_b
    common = (in_a >= max(COMMON_MIN, COMMON_SHARE * na)) | (in_b >= max(COMMON_MIN, COMMON_SHARE * nb))
    useful = ~common[run]
    # Sentence lengths without the recurring terms.
    la = np.bincount(sent[useful & ~owner], minlength=na).astype(np.float64)
    lb = np.bincount(sent[useful & owner], minlength=nb).astype(np.float64)
    both = (in_a > 0) & (in_b > 0) & ~common
    if not both.any():
        return empty
    # Every (A occurrence, B occurrence) of a shared term: A's come first in the run, then B's.
    a_pos = np.flatnonzero(both[run] & ~owner)
    reps = in_b[run[a_pos]]
    b_first = starts[run[a_pos]] + in_a[run[a_pos]]
    b_pos = np.repeat(b_first, reps) + (np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps))
    shared = np.bincount(np.repeat(sent[a_pos], reps) * nb + sent[b_pos], minlength=na * nb).reshape(na, nb)
    cos = shared / np.sqrt(np.maximum(la[:, None] * lb[None, :], 1.0))
    ok = (cos >= SENTENCE_COSINE) & (shared >= MIN_SHARED)
    best = np.where(ok, cos, 0.0).argmax(axis=1)
    candidates = np.flatnonzero(ok.any(axis=1))
    # Copies keep the story's order (a few swaps aside); sentences that merely share a pattern do not.
    in_order = candidates[_monotone(best[candidates])]
    hit_a = np.zeros(na, dtype=bool)
    hit_a[in_order] = True
    hit_b = ok[in_order].any(axis=0)
    pairs = [(int(i), int(best[i]), round(float(cos[i, best[i]]), 3)) for i in in_order]
    full_a, full_b = a_lens.astype(np.float64), b_lens.astype(np.float64)
    return Alignment(
        pairs,
        float(full_a[hit_a].sum() / full_a.sum()),
        float(full_b[hit_b].sum() / full_b.sum()),
        v[starts[(in_a > 0) & (in_b > 0)]],
    )


def evidence(text: str, where: list[int], alignment: Alignment, *, limit: int = 12) -> dict:
    """What an analyst reads: aligned sentence pairs (with this text's sentence), the names and numbers of
    the aligned sentences found in the earlier text, and the aligned sentences holding quoted speech.

    `alignment` was computed with this text as A; `where` is its `Features.where`. Sentence numbers
    count the kept sentences (at least MIN_SENTENCE_TERMS content words) from 0.
    """
    shared = set(alignment.shared_terms.tolist())
    sentences = sentences_of(text)
    texts = {i: sentences[where[i]] for i, _, _ in alignment.pairs}
    names: dict[str, None] = {}
    for i in sorted(texts):
        for pos, tok in enumerate(_WORD.findall(texts[i])):
            if (tok[0].isdigit() or (pos > 0 and tok[0].isupper())) and _term(tok) in shared:
                names[tok] = None
    quotes = [texts[i][:160] for i, _, _ in alignment.pairs if _QUOTE.search(texts[i])]
    return {
        "coverage_new": round(alignment.coverage_a, 3),
        "coverage_earlier": round(alignment.coverage_b, 3),
        "aligned": [
            {"sentence": i, "earlier_sentence": j, "cosine": c, "text": texts[i][:160]}
            for i, j, c in alignment.pairs[:limit]
        ],
        "aligned_count": len(alignment.pairs),
        "entities_matched": list(names)[:60],  # in text order
        "quotes_matched": quotes[:limit],
    }


__all__ = ["MAX_TERMS", "Alignment", "Features", "align", "evidence", "features", "sentences_of"]
