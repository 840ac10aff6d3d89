"""Cleaning rules, normalisation and quality gates (pipeline.stages.clean, pipeline.text.normalise)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.config import CleaningRules
from pipeline.core.errors import NotAnArticle
from pipeline.stages.clean import clean_article, clean_text
from pipeline.text.gates import MIN_WORDS
from pipeline.text.normalise import normalise_text, word_count

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed-article.txt"
BODY = (
    "The council voted on Tuesday to extend the harbour tram line by four stops, a plan that has been "
    "debated for more than a decade and will now cost about ninety million euros over five years. "
    "Officials said construction would start in the spring and last until the end of next year."
)


FRENCH = (
    "Le conseil municipal a voté mardi la prolongation de la ligne de tramway du port jusqu'à quatre "
    "nouvelles stations, un projet discuté depuis plus de dix ans qui coûtera environ quatre-vingt-dix "
    "millions d'euros sur cinq ans. Les travaux commenceront au printemps et dureront jusqu'à la fin de "
    "l'année prochaine, selon la mairie."
)


def test_language_gate_rejects_text_in_another_language_than_the_source_s():
    assert clean_article({"url": "u", "text": FRENCH}, language="fr")["language"] == "fr"
    assert clean_article({"url": "u", "text": FRENCH})["language"] == "fr"  # no configured language: no gate
    with pytest.raises(NotAnArticle) as err:
        clean_article({"url": "u", "text": FRENCH}, language="en")
    assert err.value.reason == "wrong_language"


def _seed_paragraphs() -> list[str]:
    return [p.strip() for p in SEED.read_text(encoding="utf-8").split("\n\n") if p.strip()]


def test_seed_article_drops_see_also_and_comment_prompts_and_keeps_the_rest():
    paragraphs = _seed_paragraphs()
    out = clean_article({"url": "https://example.com/a", "text": "\n".join(paragraphs)})
    kept = out["text"].split("\n")
    expected_kept = [
        normalise_text(p)
        for p in paragraphs
        if not p.startswith("See also") and p not in ("Leave a Reply", "Your email address will not be published.")
    ]
    assert len(expected_kept) == len(paragraphs) - 4
    assert kept == expected_kept
    assert [r["text"] for r in out["removed"]] == [
        "See also Brendan Fraser: The character who taught me that fat people are 'incredibly strong' | Venice Film Festival",
        "See also Putin raised doubts about the Ukraine grain deal and gas supplies to Europe",
        "Leave a Reply",
        "Your email address will not be published.",
    ]
    rules = {r["rule"] for r in out["removed"]}
    assert rules == {"related_link", "comment_prompt"}
    assert out["word_count"] == word_count(out["text"])
    assert out["language"] == "en"


def test_every_removal_names_its_rule():
    text = "\n".join(
        [
            BODY,
            "Share this article",
            "Sign up for our daily newsletter",
            "We use cookies to improve your experience on our site.",
            "Click here to subscribe",
            "Related: Tram fares rise in May",
            "ALSO READ: Ferry strike called off",
            BODY.replace("tram", "bus"),
        ]
    )
    out, removed, warnings = clean_text(text)
    assert out == "\n".join([BODY, BODY.replace("tram", "bus")])
    assert [r["rule"] for r in removed] == [
        "related_link",
        "related_link",
        "share_bar",
        "newsletter",
        "cookie_notice",
        "subscribe_prompt",
    ]
    assert not warnings


def test_rule_that_would_remove_most_of_the_article_is_reported_not_applied():
    # A page whose paragraphs all happen to start like "related" lines: dropping them would empty it.
    lines = [
        "Related: the mayor said the plan would go ahead after all, whatever the cost turned out to be",
        "Related: the opposition said it would fight the plan in court and in the next election campaign",
        "The vote was close.",
    ]
    out, removed, warnings = clean_text("\n".join(lines))
    assert out.split("\n") == lines
    assert removed == []
    assert warnings and warnings[0]["rule"] == "related_link"


def test_repeated_title_and_byline_removed():
    record = {
        "url": "u",
        "title": "Tram line to grow by four stops",
        "author": "Ana Ruiz",
        "text": "\n".join(["Tram line to grow by four stops", "By Ana Ruiz", BODY, "Ana Ruiz"]),
    }
    out = clean_article(record)
    assert out["text"] == BODY
    assert [r["rule"] for r in out["removed"]] == ["repeated_header"] * 3


def test_comment_section_tail_is_truncated():
    text = "\n".join([BODY, BODY, "3 Comments", "Great article, thanks!", "I disagree with the mayor."])
    out, removed, _ = clean_text(text)
    assert out == "\n".join([BODY, BODY])
    assert {r["rule"] for r in removed} == {"comment_section"}


def test_per_source_rules():
    rules = CleaningRules(drop_lines=[r"^Photo:"], truncate_after=[r"^This story was produced by"])
    text = "\n".join(
        [
            BODY,
            "Photo: the tram depot at dawn",
            BODY,
            "This story was produced by a partner.",
            "Partner boilerplate follows.",
        ]
    )
    out, removed, _ = clean_text(text, rules)
    assert out == "\n".join([BODY, BODY])
    assert [r["rule"] for r in removed] == ["source:drop_lines:^Photo:"] + [
        "source:truncate_after:^This story was produced by"
    ] * 2


def test_prose_that_mentions_sharing_or_comments_is_kept():
    lines = [
        "Shareholders will vote on the merger next week, the company said in a statement to the exchange.",
        "The minister declined to comment on the report, which was published on Monday.",
        "Readers who want to share their experience of the tram can write to the council.",
        BODY,
    ]
    out, removed, _ = clean_text("\n".join(lines))
    assert out.split("\n") == lines and removed == []


def test_too_short_is_rejected_with_reason():
    with pytest.raises(NotAnArticle) as err:
        clean_article({"url": "u", "text": "Just a caption under a photo."})
    assert err.value.reason == "too_short"
    assert MIN_WORDS > 6


def test_normalisation_fixes_mojibake_invisibles_and_spaces_but_keeps_quotes_and_scripts():
    text = "Caf\u00c3\u00a9 soft\u00adhyphen zero\u200bwidth\u00a0 \u201cquoted\u201d\n\n  \u0627\u0644\u0639\u0631\u0628\u064a\u0629  \u200c  \n\u65e5\u672c\u8a9e"
    assert (
        normalise_text(text)
        == "Caf\u00e9 softhyphen zerowidth \u201cquoted\u201d\n\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u200c\n\u65e5\u672c\u8a9e"
    )
    # NFC: a decomposed e + combining acute becomes one code point
    assert normalise_text("e\u0301") == "\u00e9"


def test_word_count_counts_cjk_characters():
    assert word_count("three plain words") == 3
    assert word_count("\u65e5\u672c\u8a9e\u306e\u6587 and two") == 7


def test_clean_stage_against_a_real_bucket(bucket, s3_settings, tmp_path):
    import gzip
    import json

    from pipeline.core.context import RunContext
    from pipeline.core.layout import cleaned_key, extracted_key, raw_prefix, rejects_key, warc_file_name
    from pipeline.stages.clean import clean_stage
    from pipeline.text.hashing import article_id, content_hash

    sources = tmp_path / "sources.yaml"
    sources.write_text(
        "sources:\n  - name: courier\n    feeds: ['https://courier.example.org/feed']\n"
        "    language: en\n    cleaning:\n      drop_lines: ['^Brought to you by']\n",
        encoding="utf-8",
    )
    ctx = RunContext(run_id="20261127T120000Z", s3=s3_settings, sources_path=sources)
    good = {
        "url": "https://courier.example.org/a",
        "canonical_url": "https://courier.example.org/a",
        "source": "courier",
        "text": "\n".join([BODY, "Brought to you by Acme Trams", "See also Fares rise", BODY + " Again."]),
        "removed": [{"rule": "html:widget:share", "text": "Share"}],
        "warc_key": "raw/x.warc.gz",
        "warc_record_id": "<urn:uuid:1>",
    }
    unknown_source = dict(
        good, url="https://other.example.org/b", canonical_url="https://other.example.org/b", source="nobody"
    )
    short = dict(good, url="https://courier.example.org/c", text="Just a caption.", warc_record_id="<urn:uuid:3>")
    french = dict(good, url="https://courier.example.org/d", warc_record_id="<urn:uuid:4>", text=FRENCH)
    key = extracted_key(ctx.run_id, f"{raw_prefix(ctx.run_id, 'courier')}{warc_file_name('courier', 1)}")
    bucket.put_jsonl(key, [good, unknown_source, short, french])

    out_key = clean_stage(ctx, [key])

    assert out_key == cleaned_key(ctx.run_id)
    rows = [json.loads(line) for line in gzip.decompress(bucket.get(out_key)).splitlines()]
    assert [r["url"] for r in rows] == [good["url"], unknown_source["url"]]
    first, second = rows
    assert first["text"] == "\n".join([BODY, BODY + " Again."])
    assert [r["rule"] for r in first["removed"]] == [
        "html:widget:share",
        "related_link",
        "source:drop_lines:^Brought to you by",
    ]
    assert "Brought to you by Acme Trams" in second["text"]  # unknown source: built-in rules only
    assert first["content_hash"] == content_hash(first["text"])
    assert first["article_id"] == article_id(first["canonical_url"], first["content_hash"])
    rejects = list(bucket.iter_jsonl(rejects_key(ctx.run_id, "clean")))
    assert [(r["url"], r["stage"], r["reason"], r["warc_record_id"]) for r in rejects] == [
        (short["url"], "clean", "too_short", "<urn:uuid:3>"),
        (french["url"], "clean", "wrong_language", "<urn:uuid:4>"),
    ]
    # The same rows and rejects when the outcomes of one file come ready-made (cleaned in the
    # extraction workers by `clean_one`, as `pipeline run` does) and another is read from the bucket.
    from pipeline.stages.clean import CleanStep

    step = CleanStep.of(ctx)
    ready = []
    for record in (good, short):
        try:
            ready.append((record, step(record)))
        except NotAnArticle as exc:
            ready.append((record, {"error": exc.reason, "detail": exc.detail}))
    other = extracted_key(ctx.run_id, f"{raw_prefix(ctx.run_id, 'courier')}{warc_file_name('courier', 2)}")
    bucket.put_jsonl(other, [unknown_source, french])
    assert clean_stage(ctx, [key, other], cleaned={key: ready}) == out_key
    again = [json.loads(line) for line in gzip.decompress(bucket.get(out_key)).splitlines()]
    assert again == [first, second]
    assert [(r["url"], r["reason"]) for r in bucket.iter_jsonl(rejects_key(ctx.run_id, "clean"))] == [
        (short["url"], "too_short"),
        (french["url"], "wrong_language"),
    ]
