"""A labelled set of rewritten copies and hard negatives, built from real article text at benchmark time.

Base stories are the article bodies of the shared extraction benchmarks
(``../shared/benchmarks/*/ground-truth.json``, English pages of 200+ words), read when
the set is built and never copied into the project. One pool of them gives the stories,
a disjoint pool the text of the hard negatives. Every story appears as

- ``original``;
- ``sub10`` / ``sub25`` / ``sub40``: a rewrite replacing 10% / 25% / 40% of all words
  (synonyms from `benchmarks.dedupe_data.SYNONYMS` where there is one, function-word swaps,
  else another content word of the corpus: a paraphrase sharing nothing with the word it
  replaces, the hardest case for lexical matching), plus name transliteration drift,
  number-format changes, sentences dropped, merged, split and reordered, and a new lead sentence;
- ``mt``: machine-translation-like noise (articles dropped, prepositions swapped, neighbour
  words swapped, quotes mangled) with 10% substitution and name drift;

and hard negatives, each a distinct story (its own ``story``; ``related`` names the story it
is related to, when it is):

- ``same_names``: another article with its names replaced by this story's names;
- ``followup``: a new story on the same people that reuses one or two paragraphs (15-30%)
  of this story as background;
- ``liveblog``: two updates of one live blog on this story: the blog's header and the
  story's lead, then each update's own text;
- ``boilerplate``: two short, different agency stories sharing the agency's trailer.
"""

from __future__ import annotations

import json
import random
import re
from functools import lru_cache
from pathlib import Path

from benchmarks.dedupe_data import _SYN

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
SOURCES = (SHARED / "article-extraction-benchmark", SHARED / "wcxb-dev")

POSITIVE_KINDS = ("sub10", "sub25", "sub40", "mt")
NEGATIVE_KINDS = ("same_names", "followup", "liveblog", "boilerplate")
STRENGTH = {"sub10": 0.10, "sub25": 0.25, "sub40": 0.40, "mt": 0.10}

_FUNCTION_SWAPS = {
    "the": ("this", "that", "a"),
    "a": ("one", "the"),
    "of": ("from", "about"),
    "in": ("within", "inside", "at"),
    "on": ("upon", "about"),
    "to": ("towards", "into"),
    "for": ("towards", "regarding"),
    "with": ("alongside", "along with"),
    "and": ("as well as", "plus"),
    "but": ("yet", "though"),
    "is": ("remains", "stays"),
    "was": ("had been", "became"),
    "are": ("remain", "stay"),
    "said": ("stated", "noted", "added"),
    "says": ("states", "notes"),
    "by": ("through", "via"),
    "at": ("in", "on"),
    "from": ("out of", "of"),
    "that": ("which", "this"),
    "it": ("this", "that"),
}
_PREPOSITIONS = ("in", "on", "at", "to", "for", "of", "by", "with")
_ENGLISH = frozenset(
    [
        "the",
        "of",
        "and",
        "to",
        "in",
        "is",
        "that",
        "for",
        "it",
        "was",
        "on",
        "with",
        "as",
        "he",
        "be",
        "by",
        "at",
        "are",
        "this",
        "from",
    ]
)
_WORD = re.compile(r"\S+")
_NUM = re.compile(r"\b\d{1,3}(?:,\d{3})+\b|\b\d{4,}\b")
_SMALL = {
    str(i): w
    for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"])
}
AGENCY_TRAILER = (
    "This story was produced by the Meridian Wire Service and is distributed to member newspapers "
    "under licence. Reporting by the Meridian newsroom; editing by the Meridian world desk. "
    "Meridian follows its published standards on accuracy, independence and freedom from bias. "
    "For corrections and clarifications contact the Meridian standards editor."
)
LIVE_HEADER = (
    "Live updates: follow our live coverage of the latest developments as they happen. "
    "This page is updated throughout the day by our reporters and editors in the newsroom."
)


@lru_cache(maxsize=1)
def base_texts(min_words: int = 200, max_words: int = 900) -> tuple[str, ...]:
    """English article bodies of the shared benchmarks (sorted by set and id), cut to whole paragraphs."""
    out = []
    for folder in SOURCES:
        truth = json.loads((folder / "ground-truth.json").read_text(encoding="utf-8"))
        for key in sorted(truth):
            entry = truth[key]
            if entry.get("page_type", "article") != "article":
                continue
            body = (entry.get("articleBody") or "").strip()
            words = body.lower().split()
            if len(words) < min_words or sum(w in _ENGLISH for w in words) < 0.15 * len(words):
                continue
            paras, n = [], 0
            for p in (p.strip() for p in body.split("\n")):
                if p and n < max_words:
                    paras.append(p)
                    n += len(p.split())
            out.append("\n".join(paras))
    if not out:
        raise FileNotFoundError(
            f"no article text under {SHARED}: the rewrite benchmark needs ../shared beside the project"
        )
    return tuple(out)


def _names(text: str) -> list[str]:
    """Capitalised words not opening a sentence, most frequent first: the story's names and places."""
    counts: dict[str, int] = {}
    prev = "."
    for w in _WORD.findall(text):
        core = w.strip("\"'“”‘’(),.;:!?")
        if core[:1].isupper() and len(core) >= 4 and core.isalpha() and prev[-1:] not in '.!?"“”':
            counts[core] = counts.get(core, 0) + 1
        prev = w
    return sorted(counts, key=lambda k: (-counts[k], k))


def _swap_names(text: str, names_from: list[str], names_to: list[str]) -> str:
    mapping = dict(zip(names_from, names_to))
    if not mapping:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, mapping)) + r")\b")
    return pattern.sub(lambda m: mapping[m.group(1)], text)


def _drift(name: str, rng: random.Random) -> str:
    """A transliteration variant: y/i, doubled or single letters, ph/f, c/k, ou/u, an added y."""
    ops = [
        lambda s: s[:-1] + "i" if s.endswith("y") else (s[:-1] + "y" if s.endswith("i") else s + "y"),
        lambda s: (
            re.sub(r"([bcdfglmnprst])\1", r"\1", s, count=1)
            if re.search(r"([bcdfglmnprst])\1", s)
            else re.sub(r"([lnrst])", r"\1\1", s, count=1)
        ),
        lambda s: s.replace("ph", "f") if "ph" in s else s.replace("f", "ph", 1),
        lambda s: s.replace("k", "c", 1) if "k" in s else s.replace("c", "k", 1),
        lambda s: s.replace("ou", "u", 1) if "ou" in s else s.replace("u", "ou", 1),
    ]
    out = rng.choice(ops)(name)
    return out[:1].upper() + out[1:]


def _numbers(text: str, rng: random.Random) -> str:
    """Number-format changes: thousands separators, percent spellings, small numbers as words, 'million' as 'm'."""
    text = _NUM.sub(lambda m: m.group().replace(",", "") if "," in m.group() else f"{int(m.group()):,}", text)
    text = re.sub(
        r"(\d) ?(?:percent|per cent)\b", lambda m: m.group(1) + rng.choice(("%", " per cent", " percent")), text
    )
    text = re.sub(r"(\d)%", lambda m: m.group(1) + rng.choice((" percent", " per cent", "%")), text)
    text = re.sub(r"\b([2-9]|10)\b(?![.,]\d)", lambda m: _SMALL[m.group(1)] if rng.random() < 0.5 else m.group(1), text)
    return re.sub(r"(\d) million\b", r"\1m", text)


def _substitute(text: str, share: float, rng: random.Random, vocab: list[str], names: set[str]) -> str:
    """Replace `share` of all words: synonyms, function-word swaps, else another content word."""
    lines = [line.split(" ") for line in text.split("\n")]
    slots = [
        (li, wi)
        for li, words in enumerate(lines)
        for wi, w in enumerate(words)
        if w and not any(c.isdigit() for c in w) and w.strip("\"'“”‘’(),.;:!?") not in names
    ]
    total = sum(len(words) for words in lines)
    for li, wi in rng.sample(slots, min(len(slots), round(share * total))):
        w = lines[li][wi]
        m = re.match(r"^([\"'“‘(]*)([^\W\d_]+)(.*)$", w)
        if not m:
            continue
        pre, core, post = m.groups()
        low = core.lower()
        if low in _SYN:
            new = rng.choice(_SYN[low])
        elif low in _FUNCTION_SWAPS:
            new = rng.choice(_FUNCTION_SWAPS[low])
        else:
            new = rng.choice(vocab)
        if core[0].isupper():
            new = new[:1].upper() + new[1:]
        lines[li][wi] = pre + new + post
    return "\n".join(" ".join(words) for words in lines)


def _sentences(para: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", para) if s]


def _restructure(text: str, rng: random.Random, names: list[str]) -> str:
    """Sentences dropped, merged, split and reordered; a paragraph moved; a new lead sentence."""
    paras = [_sentences(p) for p in text.split("\n") if p.strip()]
    flat = [(pi, s) for pi, p in enumerate(paras) for s in p]
    if len(flat) > 8:
        for _ in range(max(1, len(flat) // 10)):  # drop ~10% of the sentences
            flat.pop(rng.randrange(1, len(flat)))
    out = [[s for pi2, s in flat if pi2 == pi] for pi in range(len(paras))]
    out = [p for p in out if p]
    for p in out:
        if len(p) > 2 and rng.random() < 0.3:  # merge two neighbours
            i = rng.randrange(len(p) - 1)
            p[i : i + 2] = [p[i].rstrip(".!?") + ", and " + p[i + 1][:1].lower() + p[i + 1][1:]]
        for i, s in enumerate(p):
            if ", " in s and len(s) > 120 and rng.random() < 0.3:  # split a long one
                head, tail = s.split(", ", 1)
                p[i : i + 1] = [head + ".", tail[:1].upper() + tail[1:]]
                break
        if len(p) > 1 and rng.random() < 0.3:  # reorder
            i = rng.randrange(len(p) - 1)
            p[i], p[i + 1] = p[i + 1], p[i]
    if len(out) > 3:
        out.insert(rng.randrange(1, len(out)), out.pop(rng.randrange(1, len(out))))
    who = names[0] if names else "the officials involved"
    lead = rng.choice(
        (
            f"In a development being closely watched this week, attention has turned once again to {who}.",
            f"Here is what we know so far about the latest news involving {who}.",
            f"Questions are mounting after the most recent events concerning {who}.",
        )
    )
    return "\n".join([lead, *(" ".join(p) for p in out)])


def _mt_noise(text: str, rng: random.Random) -> str:
    """Machine-translation-like noise: articles dropped, prepositions swapped, neighbours swapped, quotes mangled."""
    lines = []
    for line in text.split("\n"):
        words = line.split(" ")
        out: list[str] = []
        for w in words:
            low = w.lower()
            if low in ("the", "a", "an") and rng.random() < 0.3:
                continue
            if low in _PREPOSITIONS and rng.random() < 0.2:
                w = rng.choice(_PREPOSITIONS)
            out.append(w)
        for _ in range(len(out) // 20):
            i = rng.randrange(max(1, len(out) - 1))
            if i + 1 < len(out):
                out[i], out[i + 1] = out[i + 1], out[i]
        line = " ".join(out)
        line = line.replace('"', rng.choice(("“", "”", '"'))).replace("“", rng.choice(("“", "”"))).replace(", ”", ",”")
        lines.append(line)
    return "\n".join(lines)


def rewrite(text: str, kind: str, rng: random.Random, vocab: list[str]) -> str:
    """A rewritten copy of `text` of one of POSITIVE_KINDS."""
    names = _names(text)
    drifted = {n: _drift(n, rng) for n in names[:12] if rng.random() < 0.5}
    out = _swap_names(text, list(drifted), list(drifted.values()))
    keep = set(names) | set(drifted.values())
    out = _substitute(out, STRENGTH[kind], rng, vocab, keep)
    out = _numbers(out, rng)
    if kind == "mt":
        return _mt_noise(out, rng)
    return _restructure(out, rng, names)


def _paragraphs(text: str) -> list[str]:
    return [p for p in text.split("\n") if p.strip()]


def _vocab(texts: tuple[str, ...]) -> list[str]:
    words = {w for t in texts[:200] for w in re.findall(r"\b[a-z]{5,12}\b", t)}
    return sorted(words)


def rewrite_set(n_stories: int = 200, *, seed: int = 22) -> list[dict]:
    """Documents (url, text, story, kind, related) in publication order; stories from the first pool."""
    texts = base_texts()
    rng = random.Random(seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    half = len(order) // 2
    pool, fillers = [texts[i] for i in order[:half]], [texts[i] for i in order[half:]]
    n_stories = min(n_stories, len(pool))
    vocab = _vocab(texts)
    docs: list[dict] = []
    next_story = n_stories
    f = 0

    def filler() -> str:
        nonlocal f
        f += 1
        if f > len(fillers):  # each filler text is used once: a second use would be an unlabelled copy
            raise ValueError(f"rewrite_set: {n_stories} stories need more filler texts than {len(fillers)}")
        return fillers[f - 1]

    for s in range(n_stories):
        text = pool[s]
        names = _names(text)
        group = [dict(url=f"https://origin{s % 7}.example/news/{s}", text=text, story=s, kind="original")]
        for k in POSITIVE_KINDS:
            group.append(dict(url=f"https://spin-{k}.example/{s}", text=rewrite(text, k, rng, vocab), story=s, kind=k))
        neg = NEGATIVE_KINDS[s % len(NEGATIVE_KINDS)]
        if neg == "same_names":
            other = filler()
            swapped = _swap_names(other, _names(other)[: len(names)], names)
            group.append(dict(text=swapped, kind=neg, related=None))
        elif neg == "followup":
            own = _paragraphs(_swap_names(filler(), [], []))
            own_names = _names("\n".join(own))
            own = _paragraphs(_swap_names("\n".join(own), own_names[: len(names)], names))
            words = sum(len(p.split()) for p in own)
            reused, n = [], 0
            for p in _paragraphs(text)[1:]:
                if n + len(p.split()) > 0.3 * words:
                    break
                reused.append(p)
                n += len(p.split())
            reused = reused or _paragraphs(text)[1:2]
            group.append(dict(text="\n".join(own[:1] + reused + own[1:]), kind=neg, related=s))
        elif neg == "liveblog":
            lead = _paragraphs(text)[0]
            for _ in range(2):
                other = filler()
                update = _swap_names(other, _names(other)[: len(names)], names)
                body = "\n".join(_paragraphs(update)[:4])
                group.append(dict(text=f"{LIVE_HEADER}\n{lead}\n{body}", kind=neg, related=s))
        else:  # boilerplate: two short agency stories with the same trailer
            for _ in range(2):
                short = " ".join(filler().split()[:120])
                group.append(dict(text=f"{short}\n{AGENCY_TRAILER}", kind=neg, related=None))
        for i, doc in enumerate(group):
            if doc["kind"] in NEGATIVE_KINDS:
                doc["story"] = next_story
                doc["url"] = f"https://other{next_story % 11}.example/n/{next_story}"
                next_story += 1
            doc.setdefault("related", None)
            doc["order"] = (s + (i and rng.randint(1, 20)), i)
        docs.extend(group)
    docs.sort(key=lambda d: d.pop("order"))
    return docs
