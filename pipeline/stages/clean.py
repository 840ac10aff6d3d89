"""Cleaning: a second, explainable layer of boilerplate removal over extracted text.

Works on paragraphs (the lines of ``record["text"]``). Each rule has a name; every
line it removes is recorded in ``removed`` as ``{"rule", "text"}`` so a reader can
see why text went missing. A rule that would remove most of an article is not
applied; it is reported in ``warnings`` instead (the page is then probably built
in a way the rule did not foresee, and losing the article is worse than keeping
a boilerplate line).

Order: normalisation (ftfy, NFC, invisible characters, spaces), built-in line
rules, built-in tail truncation (comment sections), per-source rules
(``CleaningRules.drop_lines`` / ``truncate_after``), then quality gates.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from pipeline.core.config import CleaningRules
from pipeline.core.context import RunContext
from pipeline.core.errors import ConfigError, NotAnArticle
from pipeline.core.layout import cleaned_key
from pipeline.dataset.rejects import reject, write_rejects
from pipeline.text.gates import MIN_WORDS, detect_language
from pipeline.text.hashing import article_id, content_hash
from pipeline.text.normalise import normalise_text, word_count

log = logging.getLogger(__name__)

#: A rule (or a source's truncation) that would take more than this share of the words
#: is not applied and is reported in `warnings` instead.
MAX_RULE_SHARE = 0.5
#: Tail truncation (a comment section heading) is only trusted past this share of the text:
#: comment forms sit after the article, a heading near the top is more likely a real sentence.
TAIL_START = 0.5


class _Alternatives:
    """A regex alternation split in two: alternatives anchored at the start (tried with one
    `match` at position 0) and the rest (one `search`). Python's re only skips the scan of
    every position when the whole pattern is anchored, so a mixed alternation is slow."""

    def __init__(self, alternatives: tuple[str, ...]):
        start = [a[1:].removeprefix(r"\s*") for a in alternatives if a.startswith("^")]
        # Unanchored ones run one by one on the lower-cased line, without IGNORECASE and without a
        # leading \b, so that re's literal-prefix scan applies (measured: ~2 us a line each, against
        # ~100 us for the same patterns as one case-insensitive alternation).
        self.anywhere = [re.compile(a.removeprefix(r"\b")) for a in alternatives if not a.startswith("^")]
        self.start = re.compile("|".join(f"(?:{a})" for a in start), re.IGNORECASE) if start else None
        self.alternatives = alternatives

    def search(self, line: str) -> bool:
        if self.start is not None and self.start.match(line.lstrip()):
            return True
        if self.anywhere:
            low = line.lower()
            return any(p.search(low) for p in self.anywhere)
        return False


@dataclass(frozen=True)
class LineRule:
    """A paragraph matching `pattern` (and no longer than `max_words`) is removed."""

    name: str
    pattern: _Alternatives
    max_words: int = 30


def _rx(*alternatives: str) -> _Alternatives:
    return _Alternatives(alternatives)


# Built-in rules: general phrasing of boilerplate in English (the pipeline's main language)
# plus a few common European equivalents. Patterns are anchored at the start of the
# paragraph unless the phrase cannot occur in running prose.
LINE_RULES: tuple[LineRule, ...] = (
    LineRule(
        "related_link",
        _rx(
            r"^\s*(see|read|watch|listen) (also|more)\b",
            r"^\s*(also|more) (read|see|watch|on)\b",
            r"^\s*related( (stories|articles?|posts?|content|coverage|news|links?|reading|topics))?\s*[:\-|–—]",
            r"^\s*related( (stories|articles?|posts?|content|coverage|news|links?|reading))?\s*$",
            r"^\s*(more|further) (stories|reading|news|coverage|from)\b.{0,60}$",
            r"^\s*(you|we think you) (may|might|will|could) (also )?(like|enjoy|be interested)",
            r"^\s*(recommended|trending|most (read|popular|viewed|shared)|top stories|editor'?s picks?|don'?t miss|must read)( for you| now| stories| articles)?\s*[:!\-–—]?\s*",
            r"^\s*(lire aussi|à lire aussi|voir aussi|leia (também|mais)|veja (também|mais)|lea también|ver también|lesen sie auch|mehr zum thema|leggi anche)\b",
        ),
        max_words=30,
    ),
    LineRule(
        "comment_prompt",
        _rx(
            r"^\s*(leave|post|add|write|submit) a (reply|comment|response)\b",
            r"your email address will not be published",
            r"required fields are marked",
            r"^\s*(cancel reply|comments are closed|no comments( yet)?|be the first to comment)\b",
            r"you must be (logged|signed) in to (post|leave) a comment",
            r"^\s*join the (conversation|discussion)\b",
            r"^\s*(\d+\s+)?(comments?|responses?|replies)\s*(\(\d+\))?\s*$",
            r"^\s*(show|view|load|see) (all )?(\d+ )?comments\b",
            r"^\s*(tell us what you think|what do you think\?|have your say)\b.{0,40}$",
            r"^\s*(save my name, email|notify me of (new|follow-up) (comments|posts))",
            r"^\s*comments? (policy|guidelines)\b",
        ),
        max_words=40,
    ),
    LineRule(
        "share_bar",
        _rx(
            r"^\s*((share|tweet|email|e-mail|print|pin|save|copy link|facebook|twitter|whatsapp|linkedin|"
            r"pinterest|reddit|telegram|messenger|flipboard|x)[\s,|/·•]*)+$",
            r"^\s*share (this|the) (article|story|post|page)\b",
            r"^\s*share (on|via|with) (facebook|twitter|x|whatsapp|linkedin|email)\b",
            r"^\s*(like|liked|enjoy|enjoyed) this (story|article|post)\??\s*(share|tell|please)",
            r"^\s*(order reprints|print (this )?article|reprints? (&|and) permissions|licensing options)\s*$",
            r"^\s*follow us on (facebook|twitter|x|instagram|linkedin|youtube|google news)\b",
        ),
        max_words=20,
    ),
    LineRule(
        "newsletter",
        _rx(
            r"\b(sign up|subscribe|register) (now |today |here )?(for|to) (our|the|a|my) .{0,60}newsletters?\b",
            r"^\s*(get|receive) (our|the) .{0,60}(newsletter|in your inbox|delivered)",
            r"^\s*(thanks|thank you) for (signing up|subscribing)\b",
            r"there was an error processing your subscription",
            r"keep an eye on your inbox",
            r"^\s*[\w' -]{0,40}\bnewsletters?\s*$",
            r"^\s*(enter your email|your email address)\s*$",
            r"by (signing up|subscribing),? you agree to",
        ),
        max_words=40,
    ),
    LineRule(
        "cookie_notice",
        _rx(
            r"\b(we|this (web)?site) uses? cookies\b",
            r"^\s*(accept|allow|manage) (all )?cookies\b",
            r"\bcookie (policy|settings|preferences)\b.{0,80}$",
        ),
        max_words=60,
    ),
    LineRule(
        "subscribe_prompt",
        _rx(
            r"^\s*(subscribe|sign up|register) (now|today|here)\b",
            # "click here" only next to an offer: alone it is as often a link in the article's own prose
            r"\b(subscri\w*|delivered|issues for|newsletter|membership)\b.{0,120}\bclick here\b",
            r"\bclick here to (subscribe|sign up|register|join)\b",
            r"^\s*(get|download) (the )?.{0,40}\bapp\b.{0,40}$",
            r"^\s*(already a subscriber|subscribers? only|become a (member|subscriber))\b",
            r"^\s*support (our|independent) journalism\b",
        ),
        max_words=30,
    ),
    LineRule(
        "author_bio",
        _rx(
            r"^\s*about the author\b",
            r"^\s*write to [^@\s].{0,60}\s(at|@)\s*\S+@\S+",
            r"^\s*(follow|contact|email|reach) (him|her|them|the (author|writer|reporter)) (on|at|via)\b",
            r"^\s*follow [\w.' -]{2,40} on (twitter|x|instagram|linkedin|facebook|bluesky|threads)\b",
        ),
        max_words=60,
    ),
    LineRule(
        "copyright_notice",
        _rx(
            r"^\s*(copyright|\(c\)|©)\s*(©\s*)?\d{4}\b",
            r"^\s*(copyright|©)\b.{0,60}\b(19|20)\d\d\b.{0,40}$",
            r"\ball rights reserved\.?\s*$",
            r"^\s*this (copy|material) is for your personal,? non-commercial use only\b",
        ),
        max_words=60,
    ),
    LineRule(
        "dateline",
        _rx(
            r"^\s*(updated|published|posted|last (updated|modified)|first published|publicado|atualizado|"
            r"mis à jour|publié|aktualisiert|veröffentlicht)( (on|at|el|em|le|am))?\s*:?\s*\S.{0,60}$",
        ),
        max_words=12,
    ),
    LineRule(
        "taxonomy",
        _rx(
            r"^\s*(tags?|tagged( with)?|topics|categories|filed under|keywords)\s*:\s*\S",
        ),
        max_words=60,
    ),
    LineRule(
        "widget_message",
        _rx(
            r"^\s*an error (has )?occurred,? please try again",
            r"^\s*this article has been sent to\b",
            r"^\s*(advertisement|sponsored( content)?|skip (ad|advertisement))\s*$",
            r"^\s*(image|photo|video)\s*(credit|source)?\s*:\s*\S+( \S+){0,3}\s*$",
        ),
        max_words=20,
    ),
)

#: All built-in line rules at once, to find the few lines worth testing rule by rule.
_ANY_RULE = _Alternatives(tuple(a for rule in LINE_RULES for a in rule.pattern.alternatives))
_MAX_RULE_WORDS = max(rule.max_words for rule in LINE_RULES)

# Headings that open a list of readers' comments or the tag list: everything from here on is not article.
# (A comment *form* heading, "Leave a Reply", is a comment_prompt line: forms hold no text.)
TAIL_RULE = LineRule(
    "comment_section",
    _rx(
        # "Responses" only in the plural: a lone "Response:" heads a paragraph of a Q&A as often as comments
        r"^\s*(\d+\s+)?(comments?|responses|reader comments)\s*(\(\d+\))?\s*:?\s*$",
        r"^\s*(join|start) the (conversation|discussion)\b",
        r"^\s*(tags|tagged|topics|related topics)\s*:?\s*$",
    ),
    max_words=12,
)

_BYLINE = re.compile(
    r"^\s*(by|written by|words by|story by|von|par|por|di)\s+[\w.'’ -]{2,60}"
    r"(\s*(\||,|and|&|–|—|-)\s*[\w.'’ -]{2,60}){0,3}\s*$",
    re.IGNORECASE,
)
_FOLD = re.compile(r"[\W_]+", re.UNICODE)


def _fold(text: str) -> str:
    return _FOLD.sub(" ", text).strip().casefold()


def _compile(patterns: Iterable[str], field: str) -> list[re.Pattern]:
    out = []
    for pattern in patterns:
        try:
            out.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise ConfigError(f"cleaning.{field}: bad regular expression {pattern!r}: {exc}") from exc
    return out


class _Run:
    """The paragraphs of one article being cleaned, with the log of what went and why."""

    def __init__(self, lines: list[str], disabled: Callable[[str], bool] | None = None):
        self.lines = lines
        self.disabled = disabled
        self.words = {line: word_count(line) for line in lines}
        self.total = max(1, sum(self.words[line] for line in lines))
        self.removed: list[dict] = []
        self.warnings: list[dict] = []

    def drop(self, rule: str, indexes: list[int]) -> None:
        """Remove these paragraphs unless that would take most of the article (or the rule is turned off)."""
        if not indexes or (self.disabled is not None and self.disabled(rule)):
            return
        words = sum(self.words[self.lines[i]] for i in indexes)
        if words > MAX_RULE_SHARE * self.total:
            self.warnings.append(
                {
                    "rule": rule,
                    "message": "not applied: would remove most of the article",
                    "words": words,
                    "of_words": self.total,
                }
            )
            return
        gone = set(indexes)
        self.removed.extend({"rule": rule, "text": self.lines[i]} for i in sorted(gone))
        self.lines = [line for i, line in enumerate(self.lines) if i not in gone]


def _line_rule_hits(lines: list[str], rule: LineRule, words: dict[str, int], suspects: set[str]) -> list[int]:
    return [
        i
        for i, line in enumerate(lines)
        if line in suspects and words.get(line, 0) <= rule.max_words and rule.pattern.search(line)
    ]


def _repeated_header(lines: list[str], title: str | None, author: str | None) -> list[int]:
    """The title repeated as the first paragraph, and bylines ("By X", the bare author name)."""
    hits: list[int] = []
    if title and lines and _fold(lines[0]) == _fold(title):
        hits.append(0)
    names = {_fold(a) for a in re.split(r"[;,]| and ", author or "") if _fold(a)}
    for i, line in enumerate(lines):
        if len(line) > 200 or i in hits or word_count(line) > 14:
            continue
        folded = _fold(line)
        if folded in names or (_BYLINE.match(line) and (not names or any(n in folded for n in names))):
            hits.append(i)
    return hits


def _tail_hits(
    lines: list[str],
    pattern: re.Pattern[str] | _Alternatives,
    words: dict[str, int],
    *,
    min_position: float,
    max_words: int,
) -> list[int]:
    """Indexes from the first paragraph matching `pattern` (past `min_position` of the words) to the end."""
    total = max(1, sum(words[line] for line in lines))
    seen = 0
    for i, line in enumerate(lines):
        if seen >= min_position * total and words[line] <= max_words and pattern.search(line):
            return list(range(i, len(lines)))
        seen += words[line]
    return []


def clean_text(
    text: str, rules: CleaningRules | None = None, *, title: str | None = None, author: str | None = None
) -> tuple[str, list[dict], list[dict]]:
    """Clean article text; returns (text, removed, warnings). No quality gate here."""
    run = _Run(normalise_text(text).split("\n") if text else [], rules.disables if rules and rules.disable else None)
    run.drop("repeated_header", _repeated_header(run.lines, title, author))
    # before the line rules, which would otherwise take the heading alone and leave the comments
    run.drop(
        TAIL_RULE.name,
        _tail_hits(run.lines, TAIL_RULE.pattern, run.words, min_position=TAIL_START, max_words=TAIL_RULE.max_words),
    )
    # One pass of all rules' patterns together finds the few lines worth testing rule by rule.
    suspects = {line for line in run.lines if run.words[line] <= _MAX_RULE_WORDS and _ANY_RULE.search(line)}
    for rule in LINE_RULES:
        run.drop(rule.name, _line_rule_hits(run.lines, rule, run.words, suspects))
    if rules is not None:
        for pattern in _compile(rules.drop_lines, "drop_lines"):
            run.drop(
                f"source:drop_lines:{pattern.pattern}", [i for i, line in enumerate(run.lines) if pattern.search(line)]
            )
        for pattern in _compile(rules.truncate_after, "truncate_after"):
            run.drop(
                f"source:truncate_after:{pattern.pattern}",
                _tail_hits(run.lines, pattern, run.words, min_position=0.0, max_words=10**9),
            )
    return "\n".join(run.lines), run.removed, run.warnings


def clean_article(record: dict, rules: CleaningRules | None = None, *, language: str | None = None) -> dict:
    """A new record with cleaned text, `removed` extended, `warnings`, language and word count.

    Raises NotAnArticle("too_short") when too little text is left, and NotAnArticle("wrong_language")
    when `language` (the source's configured ISO 639-1 code) is given and the text is in another one.
    """
    text, removed, warnings = clean_text(
        record.get("text") or "", rules, title=record.get("title"), author=record.get("author")
    )
    out = dict(record)
    out["text"] = text
    out["removed"] = list(record.get("removed") or []) + removed
    out["warnings"] = list(record.get("warnings") or []) + warnings
    out["word_count"] = word_count(text)  # one findall over the text: cheaper than summing per line
    out["language"] = detect_language(text) or record.get("language")
    if out["word_count"] < MIN_WORDS:
        raise NotAnArticle("too_short", f"{out['word_count']} words after cleaning (minimum {MIN_WORDS})")
    if language and out["language"] and out["language"] != language.lower():
        raise NotAnArticle("wrong_language", f"text is {out['language']!r}, the source is configured as {language!r}")
    return out


# --------------------------------------------------------------------------- stage


def clean_one(record: dict, rules: CleaningRules | None = None, *, language: str | None = None) -> dict:
    """`clean_article` plus the record's content hash and article id: one row of the cleaned file.

    Raises NotAnArticle as `clean_article` does.
    """
    cleaned = clean_article(record, rules, language=language)
    cleaned["content_hash"] = content_hash(cleaned["text"])
    cleaned["article_id"] = article_id(cleaned.get("canonical_url") or cleaned["url"], cleaned["content_hash"])
    return cleaned


@dataclass(frozen=True)
class CleanStep:
    """The clean stage's per-record work, `clean_one` with each source's rules and language.

    `clean_stage` runs it over the extracted files in the bucket; `pipeline.flows` also hands it to
    the extraction workers (a `PageStep` of `extract_outcomes(then=...)`), so that in a one-process
    run each page is cleaned on the core that extracted it, during the crawl.
    """

    rules: Mapping[str, CleaningRules | None] = field(default_factory=dict)
    languages: Mapping[str, str | None] = field(default_factory=dict)

    @classmethod
    def of(cls, ctx: RunContext) -> CleanStep:
        """The step for the run's sources file."""
        return cls(ctx.sources.cleaning_rules(), ctx.sources.languages())

    def __call__(self, record: dict, item: Mapping | None = None) -> dict:
        """The cleaned row of `record` (its source read from `item`, else from the record itself)."""
        source = (item if item is not None else record).get("source") or ""
        return clean_one(record, self.rules.get(source), language=self.languages.get(source))

    def warmup(self) -> None:
        """Load the language model once, before the extraction workers fork."""
        detect_language("warming up the language identifier model before work starts")


#: What cleaning made of one extracted record: (the record, its cleaned row or {"error", "detail"}).
Outcome = tuple[dict, dict]


def clean_outcomes(ctx: RunContext, extracted_key: str, step: CleanStep | None = None) -> Iterator[Outcome]:
    """(record, cleaned row or {"error", "detail"}) for every record of one extracted file in the bucket,
    read as it arrives."""
    step = step or CleanStep.of(ctx)
    for record in ctx.bucket.iter_jsonl(extracted_key):
        try:
            yield record, step(record)
        except NotAnArticle as exc:
            yield record, {"error": exc.reason, "detail": exc.detail}


def clean_stage(
    ctx: RunContext, extracted_keys: list[str], *, cleaned: Mapping[str, Iterable[Outcome]] | None = None
) -> str:
    """Clean every extracted record of the run; writes `work/.../cleaned.jsonl.gz`, returns its key.

    `cleaned`, when given, holds the outcomes of extracted files already cleaned elsewhere (by
    extracted key); the other files are read from the bucket and cleaned here. Rows keep the
    order of `extracted_keys` either way. Streams: rows go to a local file as they come, uploaded at the end.
    """
    out_key = cleaned_key(ctx.run_id)
    step = CleanStep.of(ctx)
    rejects: list[dict] = []
    with ctx.bucket.jsonl_upload(out_key) as out:
        for key in extracted_keys:
            outcomes = (cleaned or {}).get(key)
            for record, result in clean_outcomes(ctx, key, step) if outcomes is None else outcomes:
                if "error" in result:
                    rejects.append(
                        reject(
                            record.get("url", ""),
                            "clean",
                            result["error"],
                            source=record.get("source"),
                            detail=result.get("detail", ""),
                            warc_key=record.get("warc_key"),
                            warc_record_id=record.get("warc_record_id"),
                        )
                    )
                else:
                    out.write(result)
    write_rejects(ctx, "clean", rejects)
    log.info("clean: %s kept, %s rejected -> %s", out.rows, len(rejects), out_key)
    return out_key
