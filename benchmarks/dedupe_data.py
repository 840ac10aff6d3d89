"""Labelled, deterministic news-like data for the dedupe benchmark and tests.

Stories are generated from sentence templates and word banks written for this
project. A *topic* (an election, a dam project, a football club...) fixes a cast
of names, organisations, places and stock phrases, so different stories on the
same topic share names and phrases: the hard negatives that must not merge.
Each story then appears as

- ``original``: the first outlet's text (300-800 words, paragraphs);
- ``syndicated``: another outlet's copy with its own boilerplate remnants (byline,
  "Read more", newsletter and copyright lines) and light edits: a sentence added
  or dropped, the headline changed, a paragraph moved;
- ``rewrite``: a machine rewrite: a share of words (3-12% by default) replaced by
  synonyms, two pairs of sentences swapped;
- ``exact``: the same text under another URL (whitespace and quote style differ);
- ``refetch``: the same URL and text again;
- ``update``: the same URL with changed text (a correction and an added paragraph).

Some stories are *follow-ups* (kind ``original``, flag ``followup``): a new story on
the same topic that reuses one to three paragraphs (background, quotes) of an
earlier story on it, 15-45% of its text: a distinct story that must stay apart.

Every document carries ``story`` (the ground-truth cluster) and ``kind``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

# Synonym groups: every filler word comes from one, so a rewrite can swap it for another member.
SYNONYMS: list[tuple[str, ...]] = [
    ("said", "stated", "noted", "declared"),
    ("announced", "unveiled", "revealed"),
    ("big", "large", "major", "substantial"),
    ("small", "minor", "modest"),
    ("plan", "proposal", "scheme"),
    ("increase", "rise", "jump"),
    ("decrease", "fall", "drop", "decline"),
    ("officials", "authorities"),
    ("residents", "locals", "inhabitants"),
    ("project", "initiative", "programme"),
    ("quickly", "rapidly", "swiftly"),
    ("important", "significant", "key"),
    ("problem", "issue", "difficulty"),
    ("help", "assist", "support"),
    ("begin", "start", "commence"),
    ("end", "finish", "conclude"),
    ("show", "indicate", "suggest"),
    ("buy", "purchase", "acquire"),
    ("costs", "expenses"),
    ("money", "funds", "funding"),
    ("people", "citizens", "individuals"),
    ("meeting", "session", "gathering"),
    ("report", "study", "review"),
    ("agreement", "deal", "accord"),
    ("warned", "cautioned"),
    ("expected", "anticipated", "predicted"),
    ("criticised", "condemned", "faulted"),
    ("building", "structure", "facility"),
    ("road", "highway", "route"),
    ("company", "firm", "business"),
    ("workers", "employees", "staff"),
    ("leaders", "chiefs", "heads"),
    ("decision", "ruling", "verdict"),
    ("changes", "reforms", "amendments"),
    ("concerns", "worries", "fears"),
    ("talks", "negotiations"),
    ("vote", "ballot"),
    ("area", "region", "district"),
    ("city", "town", "municipality"),
    ("hospital", "clinic"),
    ("children", "kids", "youngsters"),
    ("police", "officers"),
    ("attack", "assault"),
    ("damage", "harm", "destruction"),
    ("storm", "tempest"),
    ("rain", "rainfall", "downpour"),
    ("price", "cost", "charge"),
    ("prices", "rates", "tariffs"),
    ("economy", "market"),
    ("growth", "expansion"),
    ("jobs", "positions", "posts"),
    ("season", "campaign"),
    ("match", "game", "fixture"),
    ("win", "victory", "triumph"),
    ("loss", "defeat"),
    ("team", "side", "squad"),
    ("coach", "manager", "trainer"),
    ("fans", "supporters", "spectators"),
    ("school", "academy"),
    ("teachers", "educators"),
    ("students", "pupils", "learners"),
    ("law", "legislation", "statute"),
    ("court", "tribunal"),
    ("judge", "magistrate"),
    ("evidence", "proof"),
    ("trial", "hearing"),
    ("budget", "spending plan"),
    ("tax", "levy"),
    ("energy", "power"),
    ("water", "supply"),
    ("river", "waterway"),
    ("bridge", "crossing"),
    ("train", "railway"),
    ("delay", "hold-up", "setback"),
    ("months", "weeks"),
    ("recently", "lately"),
    ("later", "afterwards", "subsequently"),
    ("however", "nevertheless", "still"),
    ("also", "additionally", "furthermore"),
    ("about", "roughly", "around", "approximately"),
    ("many", "numerous", "several"),
    ("new", "fresh", "novel"),
    ("old", "ageing", "aging"),
    ("difficult", "hard", "tough"),
    ("easy", "simple", "straightforward"),
    ("likely", "probable"),
    ("clear", "evident", "obvious"),
    ("strong", "robust", "powerful"),
    ("weak", "fragile", "feeble"),
    ("safe", "secure"),
    ("dangerous", "hazardous", "risky"),
    ("local", "regional", "municipal"),
    ("national", "federal", "nationwide"),
    ("public", "community"),
    ("private", "independent"),
    ("early", "initial"),
    ("final", "last", "closing"),
    ("rejected", "dismissed", "turned down"),
    ("approved", "endorsed", "backed"),
    ("investigate", "examine", "probe"),
    ("reduce", "cut", "lower"),
    ("improve", "enhance", "boost"),
    ("protect", "shield", "safeguard"),
    ("build", "construct", "erect"),
    ("close", "shut"),
    ("open", "launch"),
    ("visit", "tour"),
    ("describe", "portray"),
    ("explain", "clarify"),
]
_SYN: dict[str, tuple[str, ...]] = {}
for _group in SYNONYMS:
    for _w in _group:
        _SYN.setdefault(_w, tuple(x for x in _group if x != _w))
_W = [g[0] for g in SYNONYMS]  # the plain filler vocabulary

FIRST = (
    "Jane",
    "Omar",
    "Priya",
    "Lukas",
    "Mei",
    "Carlos",
    "Amara",
    "Tom",
    "Sofia",
    "Kwame",
    "Elena",
    "Raj",
    "Fatima",
    "Henrik",
    "Grace",
    "Diego",
    "Aiko",
    "Samuel",
    "Nadia",
    "Pavel",
    "Lucy",
    "Ahmed",
    "Ines",
    "Ben",
)
LAST = (
    "Holloway",
    "Mensah",
    "Okafor",
    "Brandt",
    "Nakamura",
    "Silva",
    "Kowalski",
    "Reyes",
    "Haddad",
    "Larsen",
    "Osei",
    "Ferreira",
    "Novak",
    "Chen",
    "Dubois",
    "Iyer",
    "Marsh",
    "Varga",
    "Lindqvist",
    "Abara",
    "Quinn",
)
TITLES = (
    "Mayor",
    "Minister",
    "Senator",
    "Chief Executive",
    "Professor",
    "Councillor",
    "Inspector",
    "Director",
    "Governor",
    "Coach",
    "Judge",
    "Dr",
)
PLACES = (
    "Northfield",
    "Ashby",
    "Port Carrow",
    "Eastmere",
    "Kingsbridge",
    "Valmont",
    "Redhill",
    "Lowton",
    "Brisa",
    "Stonehaven",
    "Marlow Bay",
    "Greyford",
    "Oakridge",
    "Sundale",
    "Westcliff",
    "Harrowgate",
)
ORG_KINDS = (
    "Council",
    "Authority",
    "Ministry of Transport",
    "Health Board",
    "Water Company",
    "United FC",
    "Energy Group",
    "Chamber of Commerce",
    "Teachers Union",
    "Port Authority",
    "Rail Trust",
    "Court",
)
TOPIC_NOUNS = (
    "dam",
    "stadium",
    "election",
    "hospital",
    "flood",
    "strike",
    "rail line",
    "school closures",
    "housing estate",
    "wind farm",
    "ferry service",
    "bypass",
    "water supply",
    "budget",
    "trial",
    "airport expansion",
    "mine",
    "bridge",
    "museum",
    "power station",
)
DAYS = (
    "on Monday",
    "on Tuesday",
    "on Wednesday",
    "on Thursday",
    "on Friday",
    "at the weekend",
    "last week",
    "this morning",
    "late on Sunday",
    "earlier this month",
    "yesterday",
)

# {P} person, {O} organisation, {L} place, {K} topic phrase, {w} filler word, {D} number, {T} time phrase.
TEMPLATES: tuple[str, ...] = (
    "{P} {w} {T} that the {w} {w} would {w} the {K} in {L}.",
    "The {O} {w} {D} {w} {w} after the {K} was {w} by {w} {w}.",
    "According to {P}, the {w} {w} of the {K} could reach {D} million by next year.",
    "{w} in {L} {w} about the {w} {w} and asked the {O} to {w} the {w}.",
    '"We will {w} every {w} to {w} the {w}," {P} told reporters {T}.',
    "The {K} has been a {w} {w} for the {O} since {D}.",
    "In a {w} {w}, {P} {w} that the {w} had {w} by {D} percent.",
    "Critics {w} the {O} for its {w} {w} of the {K}.",
    "{P}, who leads the {O}, {w} the {w} {w} as {w}.",
    "More than {D} {w} attended a {w} in {L} {T} to {w} the {K}.",
    "The {w} {w} of {L} {w} {D} {w} during the {w} {w}.",
    "A spokesperson for the {O} {w} that no {w} had been {w}.",
    "{P} is {w} to {w} the {K} with {P} {T}.",
    "Figures {w} by the {O} {w} a {w} {w} of {D} percent in {L}.",
    "The {w} over the {K} {w} as {w} from {L} {w} the {w}.",
    "It is the {w} {w} of its kind in {L} since the {D} {w}.",
    "{P} {w} the {O} would publish a {w} {w} on the {K} {T}.",
    "Some {w} {w} the {w} could {w} {w} {w} in the {w} {w}.",
    'Asked about the {w}, {P} {w}: "The {K} is not {w}."',
    "Opposition {w} {w} for an {w} {w} into the {K}.",
    "The {O} {w} {D} {w} to {w} the {w} {w} around {L}.",
    "Work on the {K} is {w} to {w} in {D}, {P} {w}.",
)


def _person(rng: random.Random) -> str:
    return f"{rng.choice(TITLES)} {rng.choice(FIRST)} {rng.choice(LAST)}"


class Topic:
    """A recurring subject: its cast and stock phrases are shared by every story on it."""

    def __init__(self, rng: random.Random):
        place = rng.choice(PLACES)
        noun = rng.choice(TOPIC_NOUNS)
        self.people = [_person(rng) for _ in range(5)]
        self.orgs = [f"{rng.choice(PLACES)} {rng.choice(ORG_KINDS)}" for _ in range(3)]
        self.places = [place] + rng.sample(PLACES, 2)
        self.phrases = [
            f"{place} {noun}",
            f"{noun} {rng.choice(_W)}",
            f"{rng.choice(_W)} {noun} {rng.choice(_W)}",
            f"{place} {noun} {rng.choice(_W)}",
        ]


def _sentence(rng: random.Random, topic: Topic, template: str) -> str:
    out = []
    for part in template.split("{"):
        if "}" not in part:
            out.append(part)
            continue
        slot, rest = part.split("}", 1)
        if slot == "P":
            out.append(rng.choice(topic.people))
        elif slot == "O":
            out.append(rng.choice(topic.orgs))
        elif slot == "L":
            out.append(rng.choice(topic.places))
        elif slot == "K":
            out.append(rng.choice(topic.phrases))
        elif slot == "D":
            out.append(str(rng.randint(2, 1999)))
        elif slot == "T":
            out.append(rng.choice(DAYS))
        else:
            out.append(rng.choice(_W))
        out.append(rest)
    text = "".join(out)
    return text[0].upper() + text[1:]


def story(rng: random.Random, topic: Topic, words: tuple[int, int] = (300, 800)) -> tuple[str, list[list[str]]]:
    """(headline, paragraphs as lists of sentences) of a new story on `topic`."""
    target = rng.randint(*words)
    paragraphs: list[list[str]] = []
    n = 0
    while n < target:
        para = [_sentence(rng, topic, rng.choice(TEMPLATES)) for _ in range(rng.randint(2, 5))]
        n += sum(s.count(" ") + 1 for s in para)
        paragraphs.append(para)
    headline = _sentence(rng, topic, rng.choice(TEMPLATES)).rstrip(".")
    return headline, paragraphs


def render(headline: str, paragraphs: list[list[str]], prefix: list[str] = (), suffix: list[str] = ()) -> str:
    return "\n".join([*prefix, headline, *(" ".join(p) for p in paragraphs), *suffix])


BYLINES = (
    "By Staff Reporter",
    "From our correspondent",
    "By {P} | Wire Service",
    "Reporting by {P}; editing by {P}",
    "Agency copy",
    "Published {T}",
    "Updated {T}",
)
TRAILERS = (
    "Read more: {K} latest",
    "Sign up for our morning newsletter",
    "Copyright 2026 {O}. All rights reserved.",
    "Share this article",
    "Follow us for more news from {L}",
    "Related: what the {K} means for {L}",
    "Have a story? Contact our newsroom.",
)


def _boiler(rng: random.Random, topic: Topic, bank: tuple[str, ...], k: int) -> list[str]:
    return [_sentence(rng, topic, t) for t in rng.sample(bank, k)]


def syndicated(rng: random.Random, topic: Topic, headline: str, paragraphs: list[list[str]]) -> str:
    """Another outlet's copy: own boilerplate remnants plus one or two light edits."""
    paras = [list(p) for p in paragraphs]
    edits = rng.sample(("add", "drop", "headline", "move"), rng.randint(1, 2))
    if "add" in edits:
        p = rng.randrange(len(paras))
        paras[p].insert(rng.randint(0, len(paras[p])), _sentence(rng, topic, rng.choice(TEMPLATES)))
    if "drop" in edits:
        p = max(range(len(paras)), key=lambda i: len(paras[i]))
        del paras[p][rng.randrange(len(paras[p]))]
    if "headline" in edits:
        headline = _sentence(rng, topic, rng.choice(TEMPLATES)).rstrip(".")
    if "move" in edits and len(paras) > 2:
        paras.insert(rng.randrange(len(paras)), paras.pop(rng.randrange(len(paras))))
    return render(
        headline,
        paras,
        _boiler(rng, topic, BYLINES, rng.randint(1, 2)),
        _boiler(rng, topic, TRAILERS, rng.randint(1, 3)),
    )


def rewrite(rng: random.Random, headline: str, paragraphs: list[list[str]], share: float) -> str:
    """A machine rewrite: `share` of all words replaced by synonyms, two sentence pairs swapped."""
    paras = [list(p) for p in paragraphs]
    for _ in range(2):
        p = rng.choice([q for q in paras if len(q) > 1] or paras)
        if len(p) > 1:
            i = rng.randrange(len(p) - 1)
            p[i], p[i + 1] = p[i + 1], p[i]
    text = render(headline, paras)
    lines = []
    for line in text.split("\n"):
        words = line.split(" ")
        swappable = [i for i, w in enumerate(words) if w in _SYN]
        for i in rng.sample(swappable, min(len(swappable), round(share * len(words)))):
            words[i] = rng.choice(_SYN[words[i]])
        lines.append(" ".join(words))
    return "\n".join(lines)


def update(rng: random.Random, topic: Topic, headline: str, paragraphs: list[list[str]]) -> str:
    """The same article edited later: a correction in one sentence and a new paragraph at the end."""
    paras = [list(p) for p in paragraphs]
    p = rng.randrange(len(paras))
    paras[p][0] = _sentence(rng, topic, rng.choice(TEMPLATES))
    paras.append([_sentence(rng, topic, rng.choice(TEMPLATES)) for _ in range(3)])
    return render("Updated: " + headline, paras)


def labelled_set(
    n_stories: int = 600, *, seed: int = 7, topics: int | None = None, rewrite_share: tuple[float, float] = (0.03, 0.12)
) -> list[dict]:
    """Documents of `n_stories` stories (about 8 per topic) with their copies, shuffled in publication order.

    Each dict: url, text, story (ground-truth cluster), kind, outlet.
    """
    rng = random.Random(seed)
    topic_list = [Topic(rng) for _ in range(topics or max(1, n_stories // 8))]
    docs: list[dict] = []
    earlier: dict[int, list[list[str]]] = {}  # topic -> paragraphs of its latest story
    for s in range(n_stories):
        t = rng.randrange(len(topic_list))
        topic = topic_list[t]
        headline, paras = story(rng, topic)
        followup = t in earlier and rng.random() < 0.35
        if followup:
            # Reuse background paragraphs of the topic's previous story (15-45% of this one's words).
            share = rng.uniform(0.15, 0.45)
            reused, words = [], 0
            total = sum(len(" ".join(p).split()) for p in paras)
            for p in rng.sample(earlier[t], len(earlier[t])):
                n_words = len(" ".join(p).split())
                if reused and words + n_words > share * total:
                    break
                reused.append(p)
                words += n_words
            keep = paras[: max(1, len(paras) - len(reused))]
            earlier[t] = keep  # only its own paragraphs: follow-ups of follow-ups do not snowball
            paras = keep[:1] + reused + keep[1:]
        else:
            earlier[t] = paras
        outlets = rng.sample(range(40), 6)
        base = f"https://outlet{outlets[0]}.example/news/{s}"
        group = [{"url": base, "text": render(headline, paras), "story": s, "kind": "original", "followup": followup}]
        for o in outlets[1 : 1 + rng.randint(0, 3)]:
            group.append(
                {
                    "url": f"https://outlet{o}.example/world/{s}-{o}",
                    "story": s,
                    "kind": "syndicated",
                    "text": syndicated(rng, topic, headline, paras),
                }
            )
        if rng.random() < 0.4:
            o = outlets[4]
            group.append(
                {
                    "url": f"https://outlet{o}.example/a/{s}",
                    "story": s,
                    "kind": "rewrite",
                    "text": rewrite(rng, headline, paras, rng.uniform(*rewrite_share)),
                }
            )
        if rng.random() < 0.15:
            group.append(
                {
                    "url": f"https://outlet{outlets[5]}.example/c/{s}",
                    "story": s,
                    "kind": "exact",
                    "text": "  " + render(headline, paras).replace('"', "\u201c") + "\n",
                }
            )
        if rng.random() < 0.15:
            group.append(
                {"url": base + "?utm_source=feed", "story": s, "kind": "refetch", "text": render(headline, paras)}
            )
        if rng.random() < 0.2:
            group.append({"url": base, "story": s, "kind": "update", "text": update(rng, topic, headline, paras)})
        for i, doc in enumerate(group):
            doc["order"] = (s + (i and rng.randint(1, 30)), i)  # copies follow their original, interleaved
        docs.extend(group)
    docs.sort(key=lambda d: d.pop("order"))
    return docs


def speed_corpus(n: int, *, seed: int = 11, dup_share: float = 0.3) -> Iterator[dict]:
    """`n` documents of realistic length, fast: unique stories plus syndicated copies of recent ones."""
    rng = random.Random(seed)
    topics = [Topic(rng) for _ in range(max(1, n // 200))]
    recent: list[tuple[Topic, str, list[list[str]]]] = []
    for i in range(n):
        if recent and rng.random() < dup_share:
            topic, headline, paras = rng.choice(recent)
            text = syndicated(rng, topic, headline, paras)
        else:
            topic = rng.choice(topics)
            headline, paras = story(rng, topic)
            text = render(headline, paras)
            recent.append((topic, headline, paras))
            if len(recent) > 500:
                recent.pop(0)
        yield {"url": f"https://outlet{i % 50}.example/n/{i}", "text": text}
