"""Dedupe benchmark: quality on a labelled set, then speed and memory against datasketch's MinHashLSH.

    .venv/bin/python -m benchmarks.bench_dedupe [--n 20000] [--baseline-n 5000] [--stories 600] [--rewrite-stories 250]
    .venv/bin/python -m benchmarks.bench_dedupe --stage-memory 200000

`--stage-memory N`: peak RSS (VmHWM) of `dedupe_stage` on N `speed_corpus` articles in an embedded
S3, each way in a fresh child process against an empty index: "whole" reads the input whole and
dedupes it as one list (what the stage did before it streamed), "stream" is `dedupe_stage`.

Quality: pairwise precision / recall / F1 of predicted clusters (`cluster_id`) against
the stories of `benchmarks.dedupe_data.labelled_set`, for several settings, plus the
recall per kind of copy (the share of copies put in their original's cluster) and
the worst cross-story merge. Rewrites (`benchmarks.rewrite_data`, real text from ../shared):
pairwise precision and recall per rewrite strength and per hard-negative kind, rewrite on
against the near level alone, with the issue's goals. Speed: documents per second of `dedupe_records` on
`speed_corpus(n)` (one process, one core) vs datasketch MinHash(num_perm=128) +
MinHashLSH(threshold=0.5) with query-then-insert per document, on the same documents
(the first `--baseline-n`: datasketch is slow). Memory: tracemalloc, in a second pass
(tracing slows Python, so timings come from the untraced pass): *retained* bytes
after the run with the output freed (the index and the token-hash cache) per
document, and the peak during the run.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import time
import tracemalloc
from collections import Counter

from benchmarks.dedupe_data import labelled_set, speed_corpus
from benchmarks.rewrite_data import NEGATIVE_KINDS, POSITIVE_KINDS, base_texts, rewrite_set
from pipeline.stages.dedupe import DedupeConfig, DedupeIndex, dedupe_records
from pipeline.text.hashing import article_id, normalise_for_hash, normalised_bytes

SETTINGS: list[tuple[float, int, int]] = [
    (0.5, 3, 128),
    (0.4, 3, 128),
    (0.35, 3, 128),
    (0.3, 3, 128),
    (0.6, 3, 128),
    (0.7, 3, 128),
    (0.5, 2, 128),
    (0.4, 2, 128),
    (0.5, 4, 128),
    (0.5, 5, 128),
    (0.4, 3, 64),
    (0.5, 3, 64),
]


def _pairs(counts) -> int:
    return sum(c * (c - 1) // 2 for c in counts)


def pairwise(docs: list[dict], out: list[dict]) -> tuple[float, float]:
    """Pairwise precision and recall of predicted clusters against true stories."""
    cells = Counter((o["cluster_id"], d["story"]) for d, o in zip(docs, out))
    tp = _pairs(cells.values())
    pred = _pairs(Counter(o["cluster_id"] for o in out).values())
    true = _pairs(Counter(d["story"] for d in docs).values())
    return (tp / pred if pred else 1.0), (tp / true if true else 1.0)


def per_kind_recall(docs: list[dict], out: list[dict]) -> dict[str, float]:
    original = {d["story"]: o["cluster_id"] for d, o in zip(docs, out) if d["kind"] == "original"}
    hit, total = Counter(), Counter()
    for d, o in zip(docs, out):
        if d["kind"] != "original":
            total[d["kind"]] += 1
            hit[d["kind"]] += o["cluster_id"] == original[d["story"]]
    return {k: hit[k] / total[k] for k in sorted(total)}


def quality(stories: int) -> None:
    docs = labelled_set(stories)
    heavy = labelled_set(stories, seed=8, rewrite_share=(0.15, 0.25))
    print(
        f"\n## Quality: labelled set, {len(docs)} documents of {stories} stories "
        f"({dict(Counter(d['kind'] for d in docs))})\n"
    )
    print(
        "| threshold | shingle | num_perm | bands x rows | precision | recall | F1 | "
        "recall syndicated | recall rewrite | recall heavy rewrite (15-25%) | recall update/exact/refetch | "
        "follow-ups merged |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for threshold, shingle, perms in SETTINGS:
        cfg = DedupeConfig(threshold=threshold, shingle_size=shingle, num_perm=perms)
        out = dedupe_records(docs, config=cfg)
        p, r = pairwise(docs, out)
        kinds = per_kind_recall(docs, out)
        hk = per_kind_recall(heavy, dedupe_records(heavy, config=cfg))
        idx = DedupeIndex(cfg)
        # Follow-ups: distinct stories reusing paragraphs of an earlier one; any merge is a precision error.
        followups = sum(1 for d in docs if d.get("followup"))
        merged = sum(1 for d, o in zip(docs, out) if d.get("followup") and o["dup_kind"] is not None)
        print(
            f"| {threshold} | {shingle} | {perms} | {idx.bands}x{idx.rows_per_band} | {p:.4f} | {r:.4f} | "
            f"{2 * p * r / (p + r):.4f} | {kinds['syndicated']:.3f} | {kinds['rewrite']:.3f} | "
            f"{hk['rewrite']:.3f} | {kinds['update']:.2f}/{kinds['exact']:.2f}/{kinds['refetch']:.2f} | "
            f"{merged}/{followups} |"
        )


def rewrite_scores(docs: list[dict], out: list[dict]) -> dict:
    """Pairwise precision over all pairs, recall per rewrite kind (pairs with the original), false merges
    per negative kind, and how many related negatives share their story's story_id."""
    p, r = pairwise(docs, out)
    original = {d["story"]: o for d, o in zip(docs, out) if d["kind"] == "original"}
    recall = {}
    for k in POSITIVE_KINDS:
        got = [o["cluster_id"] == original[d["story"]]["cluster_id"] for d, o in zip(docs, out) if d["kind"] == k]
        recall[k] = sum(got) / max(1, len(got))
    cluster_story = Counter((o["cluster_id"], d["story"]) for d, o in zip(docs, out))
    stories_of = Counter(c for c, _ in cluster_story)
    merged, total, related, related_total = Counter(), Counter(), 0, 0
    for d, o in zip(docs, out):
        if d["kind"] in NEGATIVE_KINDS:
            total[d["kind"]] += 1
            merged[d["kind"]] += stories_of[o["cluster_id"]] > 1  # its cluster holds another story
            if d.get("related") is not None:
                related_total += 1
                related += o["story_id"] == original[d["related"]]["story_id"]
    return {
        "precision": p,
        "recall": r,
        "per_kind": recall,
        "merged": merged,
        "total": total,
        "related": (related, related_total),
    }


def rewrite_quality(stories: int) -> dict:
    """The rewrite benchmark: rewrite on (the default) against today's near-duplicate level alone."""
    docs = rewrite_set(stories)
    print(
        f"\n## Rewrites: {len(docs)} documents of {stories} real stories "
        f"({dict(Counter(d['kind'] for d in docs))}), base text from ../shared/benchmarks\n"
    )
    print(
        "| method | pairwise precision | pairwise recall | recall 10% | recall 25% | recall 40% | recall MT-like | "
        + " | ".join(f"{k} merged" for k in NEGATIVE_KINDS)
        + " | related sharing story_id | docs/s |"
    )
    print("|---|" + "---|" * (8 + len(NEGATIVE_KINDS)))
    results = {}
    for label, cfg in (("near only (rewrite off)", DedupeConfig(rewrite=False)), ("near + rewrite", DedupeConfig())):
        t = time.perf_counter()
        out = dedupe_records(docs, config=cfg)
        rate = len(docs) / (time.perf_counter() - t)
        sc = rewrite_scores(docs, out)
        results[label] = sc
        k = sc["per_kind"]
        print(
            f"| {label} | {sc['precision']:.4f} | {sc['recall']:.4f} | {k['sub10']:.3f} | {k['sub25']:.3f} | "
            f"{k['sub40']:.3f} | {k['mt']:.3f} | "
            + " | ".join(f"{sc['merged'][n]}/{sc['total'][n]}" for n in NEGATIVE_KINDS)
            + f" | {sc['related'][0]}/{sc['related'][1]} | {rate:,.0f} |"
        )
    sc = results["near + rewrite"]
    k = sc["per_kind"]
    print(
        f"\nGoals: recall at 25% >= 0.90: {k['sub25']:.3f} {'met' if k['sub25'] >= 0.9 else 'NOT met'}; "
        f"at 40% >= 0.75: {k['sub40']:.3f} {'met' if k['sub40'] >= 0.75 else 'NOT met'}; "
        f"precision over all negatives >= 0.99: {sc['precision']:.4f} {'met' if sc['precision'] >= 0.99 else 'NOT met'}"
    )
    return results


def _shingles(text: str, k: int = 3) -> list[bytes]:
    words = normalise_for_hash(text).split()
    return [" ".join(words[i : i + k]).encode() for i in range(max(1, len(words) - k + 1))]


def run_ours(docs: list[dict]) -> list[dict]:
    return dedupe_records(docs)


def run_datasketch(docs: list[dict]) -> int:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    dups = 0
    for i, d in enumerate(docs):
        m = MinHash(num_perm=128)
        m.update_batch(_shingles(d["text"]))
        dups += bool(lsh.query(m))
        lsh.insert(i, m)
    return dups


def measure(fn, docs: list[dict]) -> tuple[float, float, int, int]:
    """(wall seconds and CPU seconds untraced, retained bytes, peak bytes) of fn(docs)."""
    gc.collect()
    t, c = time.perf_counter(), time.process_time()
    out = fn(docs)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    del out
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    holder = _Holder(fn, docs)
    retained = tracemalloc.get_traced_memory()[0] - base
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del holder
    return seconds, cpu, retained, peak


class _Holder:
    """Runs fn and keeps only what fn keeps alive (its index), dropping the per-record output."""

    def __init__(self, fn, docs):
        if fn is run_ours:
            self.index = DedupeIndex()
            dedupe_records(docs, index=self.index)  # the output is dropped at once: only the index stays
        else:
            from datasketch import MinHash, MinHashLSH

            self.lsh = MinHashLSH(threshold=0.5, num_perm=128)
            for i, d in enumerate(docs):
                m = MinHash(num_perm=128)
                m.update_batch(_shingles(d["text"]))
                self.lsh.query(m)
                self.lsh.insert(i, m)
        gc.collect()


def speed(n: int, baseline_n: int) -> None:
    t = time.perf_counter()
    raw = list(speed_corpus(n))
    # As the clean stage hands them over: canonical_url, content_hash and article_id already set.
    # (content_hash via the tested-equal fast normaliser: pipeline.text.hashing's regex would dominate set-up time)
    docs = [
        dict(d, canonical_url=d["url"], content_hash=hashlib.sha256(normalised_bytes(d["text"])).hexdigest())
        for d in raw
    ]
    for d in docs:
        d["article_id"] = article_id(d["url"], d["content_hash"])
    words = sum(d["text"].count(" ") + 1 for d in docs) / len(docs)
    print(
        f"\n## Speed and memory: {n} generated articles, {words:.0f} words on average "
        f"(generated in {time.perf_counter() - t:.1f} s; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores: wall rates fall when the machine is shared, CPU-second rates less)\n"
    )
    print(
        "| method | docs | docs/s wall (one process) | docs per CPU second | retained memory per doc "
        "(tracemalloc) | peak traced memory |"
    )
    print("|---|---|---|---|---|---|")
    sec, cpu, kept, peak = measure(run_ours, docs)
    cfg = DedupeConfig()
    label = f"num_perm {cfg.num_perm}, threshold {cfg.threshold}, shingle {cfg.shingle_size}"
    print(
        f"| news-ingest dedupe_records ({label}), clean-stage records | {n} | {n / sec:,.0f} | "
        f"{n / cpu:,.0f} | {kept / n:,.0f} B | {peak / 2**20:,.0f} MiB |"
    )
    gc.collect()
    t, c = time.perf_counter(), time.process_time()
    dedupe_records(docs, config=DedupeConfig(rewrite=False))
    sec, cpu = time.perf_counter() - t, time.process_time() - c
    print(
        f"| news-ingest dedupe_records, rewrite off (url, exact, near only), clean-stage records | {n} | "
        f"{n / sec:,.0f} | {n / cpu:,.0f} | | |"
    )
    bare = [{"url": d["url"], "text": d["text"]} for d in raw]
    t, c = time.perf_counter(), time.process_time()
    run_ours(bare)
    sec, cpu = time.perf_counter() - t, time.process_time() - c
    print(
        f"| news-ingest dedupe_records ({label}), url+text only (URLs canonicalised, hashes computed) | {n} | "
        f"{n / sec:,.0f} | {n / cpu:,.0f} | (same index) | |"
    )
    base = docs[:baseline_n]
    sec, cpu, kept, peak = measure(run_datasketch, base)
    print(
        f"| datasketch MinHash(128) + MinHashLSH(0.5), query+insert each doc | {len(base)} | "
        f"{len(base) / sec:,.0f} | {len(base) / cpu:,.0f} | {kept / len(base):,.0f} B | {peak / 2**20:,.0f} MiB |"
    )
    idx = DedupeIndex()
    out = dedupe_records(docs[:20000], index=idx)
    rw_bytes = idx.rw_sig.nbytes + idx.terms.nbytes + idx.sent_lens.nbytes + idx.rewrite_lookup().nbytes
    print(
        f"\nIndex arrays after {len(idx):,} docs: {idx.nbytes / len(idx):,.0f} B/doc "
        f"(signature {idx.config.num_perm * 2} B as 16-bit b-bit MinHash, {idx.bands} band keys, ids; "
        f"rewrite features {rw_bytes / len(idx):,.0f} B/doc: term ids, sentence lengths, 48-value MinHash, "
        f"24 band keys); dup kinds in the speed corpus: {dict(Counter(o['dup_kind'] for o in out))}"
    )
    texts = base_texts()
    real = DedupeIndex()
    dedupe_records([{"url": f"https://r.example/{i}", "text": x} for i, x in enumerate(texts)], index=real)
    print(
        f"Index on the {len(texts)} real article texts of ../shared (up to 900 words each): "
        f"{real.nbytes / len(real):,.0f} B/doc"
    )


def _peak_mb() -> float:
    """VmHWM of this process (its own peak RSS; ru_maxrss would carry the parent's over the exec)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM:"))


def _stage_child(mode: str, key: str) -> None:
    import json

    from pipeline.core.config import S3Settings
    from pipeline.core.context import RunContext
    from pipeline.core.layout import deduped_key
    from pipeline.core.layout import run_date as run_date_of
    from pipeline.stages.dedupe import dedupe_stage

    ctx = RunContext(run_id="20261127T120000Z", s3=S3Settings.from_env())
    t0 = time.perf_counter()
    if mode == "stream":
        dedupe_stage(ctx, key)
    else:  # the stage before it streamed: the input read whole, deduped as one list, written whole
        day = run_date_of(ctx.run_id)
        records = list(ctx.bucket.iter_jsonl(key))
        index = DedupeIndex.load(ctx.bucket, run_date=day)
        out = dedupe_records(records, index=index, run_date=day, run_id=ctx.run_id)
        index.save(ctx.bucket)
        ctx.bucket.put_jsonl(deduped_key(ctx.run_id), [r for r in out if r["dup_kind"] != "url"])
    print(json.dumps({"mode": mode, "seconds": time.perf_counter() - t0, "peak_rss_mb": _peak_mb()}))


def stage_memory(n: int) -> None:
    """Peak RSS of the dedupe stage on n articles, read whole vs streamed (each in a child process)."""
    import gzip
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from pipeline.core.bucket import Bucket
    from pipeline.core.layout import DEDUPE_INDEX_PREFIX
    from pipeline.runtime.s3server import EmbeddedS3

    with tempfile.TemporaryDirectory(prefix="bench-dedupe-") as tmp:
        server = EmbeddedS3(Path(tmp) / "s3")
        info = server.up("warmup")
        try:
            settings = info.settings("dedupemem")
            bucket = Bucket(settings)
            bucket.ensure()
            key = "work/dt=2026-11-27/run=20261127T120000Z/cleaned.jsonl.gz"
            path = Path(tmp) / "cleaned.jsonl.gz"
            with gzip.open(path, "wb", compresslevel=1) as fh:  # written as generated: the corpus is never held
                for doc in speed_corpus(n, seed=29):
                    fh.write(json.dumps(doc).encode() + b"\n")
            bucket.put_file(key, str(path), content_type="application/x-ndjson")
            print(f"{n:,} articles, {path.stat().st_size / 1e6:.0f} MB gzipped", flush=True)
            env = {
                **os.environ,
                "AWS_ENDPOINT_URL": info.endpoint_url,
                "AWS_ACCESS_KEY_ID": info.access_key_id,
                "AWS_SECRET_ACCESS_KEY": info.secret_access_key,
                "NEWS_INGEST_BUCKET": "dedupemem",
            }
            for mode in ("whole", "stream"):
                bucket.delete(bucket.list(DEDUPE_INDEX_PREFIX))  # each way starts from an empty index
                proc = subprocess.run(
                    [sys.executable, "-m", "benchmarks.bench_dedupe", "--stage-child", mode, "--key", key],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                print(proc.stdout.strip().splitlines()[-1], flush=True)
        finally:
            server.down()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="documents for the speed run (rewrite on: ~20 s a pass)")
    parser.add_argument("--baseline-n", type=int, default=5_000, help="documents for the datasketch baseline")
    parser.add_argument("--stories", type=int, default=600, help="stories in the labelled set")
    parser.add_argument("--rewrite-stories", type=int, default=250, help="real stories in the rewrite set")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-rewrite", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--stage-memory", type=int, default=0, help="only: peak RSS of the stage on N articles")
    parser.add_argument("--stage-child", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage_child:
        _stage_child(args.stage_child, args.key)
        return
    if args.stage_memory:
        stage_memory(args.stage_memory)
        return
    if not args.skip_quality:
        quality(args.stories)
    if not args.skip_rewrite:
        rewrite_quality(args.rewrite_stories)
    if not args.skip_speed:
        speed(args.n, min(args.baseline_n, args.n))


if __name__ == "__main__":
    main()
