"""The `rewrite` duplicate kind: seed article vs its cleaned-up wire text, hard negatives, story_id,
persistence through the real index in S3, unchanged revisits, and a small-scale rewrite benchmark."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from benchmarks.rewrite_data import NEGATIVE_KINDS, base_texts, rewrite, rewrite_set
from pipeline.core.context import RunContext
from pipeline.core.layout import cleaned_key, deduped_key
from pipeline.dataset.schema import ARTICLE_SCHEMA, SCHEMA_VERSION, conform
from pipeline.stages.dedupe import DedupeConfig, DedupeIndex, dedupe_records, dedupe_stage
from pipeline.text.rewrite import align, features

HERE = Path(__file__).resolve().parent
SEED = HERE.parents[1] / "shared" / "seed-article.txt"
CLEAN = HERE / "data" / "dedupe" / "seed-clean.txt"


def _pair(first: str, second: str, config: DedupeConfig | None = None) -> list[dict]:
    return dedupe_records(
        [{"url": "https://wire.example/a", "text": first}, {"url": "https://farm.example/b", "text": second}],
        config=config,
    )


def test_seed_article_and_its_clean_wire_text_are_one_cluster():
    out = _pair(CLEAN.read_text(), SEED.read_text())
    assert out[1]["dup_kind"] in ("rewrite", "near")
    assert out[1]["cluster_id"] == out[1]["duplicate_of"] == out[0]["article_id"]
    assert out[1]["story_id"] == out[0]["story_id"] == out[0]["article_id"]
    # Today's near level alone misses it: the spinner changed most 3-word shingles.
    assert _pair(CLEAN.read_text(), SEED.read_text(), DedupeConfig(rewrite=False))[1]["dup_kind"] is None


def test_rewrite_verdict_explains_itself():
    out = _pair(CLEAN.read_text(), SEED.read_text())[1]
    assert out["dup_kind"] == "rewrite" and 0.45 <= out["dup_similarity"] <= 1.0
    ev = json.loads(out["dup_evidence"])
    assert ev["aligned_count"] >= 15 and ev["coverage_new"] >= 0.8 and ev["coverage_earlier"] >= 0.8
    first = ev["aligned"][0]
    assert {"sentence", "earlier_sentence", "cosine", "text"} <= set(first)
    assert {"Sullivan", "Sayers", "Beijing"} <= set(ev["entities_matched"])
    assert any(q.startswith("\u201cWe are contacting Beijing") for q in ev["quotes_matched"])


def test_near_duplicates_and_exact_copies_carry_similarity_and_story():
    text = CLEAN.read_text()
    out = dedupe_records(
        [
            {"url": "https://wire.example/a", "text": text},
            {"url": "https://b.example/x", "text": text + "\nRead more at our site."},
            {"url": "https://c.example/y", "text": " " + text},
        ]
    )
    assert [r["dup_kind"] for r in out] == [None, "near", "exact"]
    assert out[0]["dup_similarity"] is None and out[2]["dup_similarity"] == 1.0
    assert 0.4 <= out[1]["dup_similarity"] <= 1.0
    assert {r["story_id"] for r in out} == {out[0]["article_id"]}


def test_different_stories_about_the_same_people_are_not_merged():
    """Names swapped in, a follow-up reusing one background paragraph, shared agency boilerplate."""
    texts = base_texts()
    story, other, third = texts[0], texts[1], texts[2]
    follow = "\n".join(other.split("\n")[:2] + story.split("\n")[1:2] + other.split("\n")[2:])
    trailer = (
        "This story was produced by the Meridian Wire Service and is distributed to member newspapers under "
        "licence. Reporting by the Meridian newsroom; editing by the Meridian world desk."
    )
    out = dedupe_records(
        [
            {"url": "https://a.example/1", "text": story},
            {"url": "https://b.example/2", "text": follow},
            {"url": "https://c.example/3", "text": " ".join(other.split()[:120]) + "\n" + trailer},
            {"url": "https://d.example/4", "text": " ".join(third.split()[:120]) + "\n" + trailer},
        ]
    )
    assert [r["dup_kind"] for r in out] == [None, None, None, None]
    assert len({r["cluster_id"] for r in out}) == 4


def test_follow_up_shares_the_story_id_not_the_cluster():
    texts = base_texts()
    story = texts[3]
    paras = story.split("\n")
    own = texts[4].split("\n")
    follow = "\n".join(own[:1] + paras[1:4] + own[1:])  # three background paragraphs, ~30% of it
    out = dedupe_records(
        [{"url": "https://a.example/1", "text": story}, {"url": "https://b.example/2", "text": follow}]
    )
    assert out[1]["dup_kind"] is None and out[1]["cluster_id"] == out[1]["article_id"]
    assert out[1]["story_id"] == out[0]["story_id"] == out[0]["article_id"]
    assert json.loads(out[1]["dup_evidence"])["related"] is True


def test_alignment_keeps_story_order_and_ignores_recurring_names():
    a = features("Alpha beta gamma delta. Epsilon zeta theta iota. Kappa lambda sigma omega.")
    b = features("Kappa lambda sigma omega. Epsilon zeta theta iota. Alpha beta gamma delta.")
    # Every sentence matches one of the other's, but in reverse order: only one pair is in order.
    assert len(align(a.terms, a.lens, b.terms, b.lens).pairs) == 1
    same = align(a.terms, a.lens, a.terms, a.lens)
    assert len(same.pairs) == 3 and same.verdict() == "rewrite" and same.score == 1.0
    # A name in every sentence is not what makes two sentences the same sentence.
    c = features("Holloway visited Ashby bridge today. Holloway opened Ashby school later. Holloway left Ashby town.")
    d = features(
        "Holloway praised Ashby nurses warmly. Holloway fined Ashby drivers heavily. Holloway sold Ashby farms."
    )
    assert align(c.terms, c.lens, d.terms, d.lens).pairs == []


# --------------------------------------------------------------------------- small-scale benchmark


def _pairwise(docs: list[dict], out: list[dict]) -> tuple[float, dict[str, float], int]:
    from benchmarks.bench_dedupe import rewrite_scores

    sc = rewrite_scores(docs, out)
    return sc["precision"], sc["per_kind"], sum(sc["merged"][k] for k in NEGATIVE_KINDS)


def test_small_rewrite_benchmark_floors():
    """The bench's rewrite set at 60 stories: floors a regression would break (measured ~0.99 / 0.8+)."""
    docs = rewrite_set(60, seed=5)
    precision, recall, merged = _pairwise(docs, dedupe_records(docs))
    assert precision >= 0.98
    assert recall["sub10"] >= 0.95 and recall["mt"] >= 0.95
    assert recall["sub25"] >= 0.85
    assert recall["sub40"] >= 0.6
    assert merged <= 3
    # Without the rewrite level the same set is mostly missed: the test measures the new level.
    _, near_recall, _ = _pairwise(docs, dedupe_records(docs, config=DedupeConfig(rewrite=False)))
    assert near_recall["sub25"] <= 0.2


def test_a_rewrite_is_found_after_its_original_whatever_the_batch():
    import random

    texts = base_texts()
    vocab = sorted({w for t in texts[:50] for w in t.lower().split() if w.isalpha() and len(w) > 5})
    docs = [{"url": f"https://o.example/{i}", "text": texts[10 + i]} for i in range(3)]
    docs += [
        {"url": f"https://r.example/{i}", "text": rewrite(texts[10 + i], "sub10", random.Random(i), vocab)}
        for i in range(3)
    ]
    whole = dedupe_records(docs)
    index = DedupeIndex()
    split = dedupe_records(docs[:3], index=index) + dedupe_records(docs[3:], index=index)
    assert all(r["dup_kind"] in ("near", "rewrite") for r in whole[3:]) and "rewrite" in [r["dup_kind"] for r in whole]
    assert [(r["dup_kind"], r["cluster_id"]) for r in split] == [(r["dup_kind"], r["cluster_id"]) for r in whole]


# --------------------------------------------------------------------------- the stage, across runs, in S3


def _stage(ctx: RunContext, rows: list[dict]) -> list[dict]:
    key = cleaned_key(ctx.run_id)
    ctx.bucket.put_jsonl(key, rows)
    assert dedupe_stage(ctx, key) == deduped_key(ctx.run_id)
    return list(ctx.bucket.iter_jsonl(deduped_key(ctx.run_id)))


def test_rewrite_found_across_runs_through_the_index_in_s3(s3_settings):
    texts = base_texts()
    follow = "\n".join(texts[4].split("\n")[:1] + texts[3].split("\n")[1:4] + texts[4].split("\n")[1:])
    day1 = _stage(
        RunContext("20261126T100000Z", s3=s3_settings),
        [
            {"url": "https://wire.example/a", "text": CLEAN.read_text()},
            {"url": "https://b.example/s", "text": texts[3]},
        ],
    )
    day2 = _stage(
        RunContext("20261127T100000Z", s3=s3_settings),
        [{"url": "https://farm.example/b", "text": SEED.read_text()}, {"url": "https://c.example/f", "text": follow}],
    )
    assert day2[0]["dup_kind"] == "rewrite" and day2[0]["duplicate_of"] == day1[0]["article_id"]
    assert day2[1]["dup_kind"] is None and day2[1]["story_id"] == day1[1]["story_id"] != day2[1]["cluster_id"]
    index = DedupeIndex.load(RunContext("20261127T100000Z", s3=s3_settings).bucket, run_date="2026-11-27")
    assert len(index) == 4 and all(len(index.rewrite_features(r)[0]) > 0 for r in range(4))


def test_unchanged_revisit_adds_no_row_and_a_changed_one_adds_a_version(s3_settings):
    text = base_texts()[7]
    first = _stage(RunContext("20261126T100000Z", s3=s3_settings), [{"url": "https://a.example/s", "text": text}])
    again = _stage(
        RunContext("20261127T100000Z", s3=s3_settings),
        [
            {"url": "https://a.example/s", "text": text},  # revisit, 200, same text
            {"url": "https://a.example/s?utm_source=x", "text": text},  # same canonical URL again
        ],
    )
    assert again == []
    changed = _stage(
        RunContext("20261128T100000Z", s3=s3_settings),
        [{"url": "https://a.example/s", "text": text + "\nUpdate: the council replied on Friday."}],
    )
    assert len(changed) == 1 and changed[0]["version"] == 2 and changed[0]["supersedes"] == first[0]["article_id"]


def test_index_shards_without_rewrite_features_still_load(bucket):
    """A shard written before the rewrite kind: rows load, with story_id = cluster_id and no rewrite features."""
    index = DedupeIndex()
    dedupe_records([{"url": "https://a.example/1", "text": base_texts()[8]}], index=index, run_date="2026-11-01")
    with np.load(io.BytesIO(index.to_bytes()), allow_pickle=False) as z:
        old = {k: z[k] for k in z.files if k not in ("terms", "sent_lens", "rw_sig", "t_n", "s_n", "story_id")}
    meta = json.loads(old["meta"].tobytes())
    meta.pop("rewrite")
    old["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **old)
    fresh = DedupeIndex()
    assert fresh.extend_from_bytes(buf.getvalue()) == 1
    assert fresh.get(0, "story_id") == fresh.get(0, "cluster_id") and len(fresh.rewrite_features(0)[0]) == 0
    out = dedupe_records([{"url": "https://b.example/2", "text": base_texts()[8]}], index=fresh)
    assert out[0]["dup_kind"] == "exact" and out[0]["story_id"] == fresh.get(0, "cluster_id")


def test_schema_4_adds_nullable_columns_and_reads_schema_3_rows():
    assert SCHEMA_VERSION == 4
    for name in ("story_id", "dup_similarity", "dup_evidence"):
        assert ARTICLE_SCHEMA.field(name).nullable
    old = pa.table({"article_id": ["x"], "cluster_id": ["x"], "dup_kind": [None]})
    got = conform(old)
    assert got.column("story_id").to_pylist() == [None] and got.column("cluster_id").to_pylist() == ["x"]


@pytest.mark.parametrize("kind", ["sub10", "sub25", "sub40", "mt"])
def test_benchmark_rewrites_change_the_text(kind):
    """The generated rewrites really rewrite: most 3-word shingles differ from the original."""
    import random

    text = base_texts()[9]
    vocab = sorted({w for t in base_texts()[:50] for w in t.lower().split() if w.isalpha() and len(w) > 5})
    spun = rewrite(text, kind, random.Random(1), vocab)

    def sh(t: str) -> set:
        w = t.lower().split()
        return {tuple(w[i : i + 3]) for i in range(len(w) - 2)}

    j = len(sh(text) & sh(spun)) / len(sh(text) | sh(spun))
    assert j < {"sub10": 0.6, "sub25": 0.35, "sub40": 0.2, "mt": 0.6}[kind]
