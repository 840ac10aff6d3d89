"""Page metadata against wcxb-dev's labels: `python -m benchmarks.bench_meta [--limit N] [--json PATH]`.

The 695 article pages of ../shared/benchmarks/wcxb-dev (labels: `title`, `author`, `published` day), this
project's `pipeline.stages.metadata.extract_metadata` against trafilatura 2.3.1's
`bare_extraction(html, url=url, with_metadata=True)`, in one process, taking turns page by page so that
load from other processes slows both alike. Scores:

- title: exact match after Unicode NFKC, case folding and whitespace folding;
- authors: per page, F1 of the author sets (the label and each prediction split on ";", "," and " and ",
  case-folded, NFKC, whitespace-folded), the mean over pages whose label names an author (no prediction
  scores 0). Pages whose label names nobody are scored apart: the share of them given an author anyway
  ("spurious") is the precision loss, and "author F1, all pages" counts each of them as 1 when nobody is
  given and 0 otherwise. The labels also name organisations, handles and first names alone ("Swoogo",
  "Everfit Team", "aawoods", "Susan"), which the brief has us refuse; "author F1, people" is the mean over
  the pages whose label names only people by the brief's rules (every name two words or more, none with an
  organisation word, none equal to the page's og:site_name or host name);
- published day: accuracy over pages whose label has a day (no prediction is wrong);
- zoned time: share of all pages given a full timestamp with a UTC offset;
- ms per page (also ours alone on the 609 non-article pages). Ours is timed on the parsed tree (the parse, shared with the body extraction, is timed
  apart); trafilatura's metadata alone (`trafilatura.metadata.extract_metadata` on the same tree, what
  `bare_extraction` runs for metadata) and its whole `bare_extraction` (body included) are both shown.

Timings are noisy on a shared machine: compare the columns of one run, not numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.extract_eval import SETS, load_set

_AUTHOR_SPLIT = re.compile(r";|,|\s+and\s+", re.I)
# The brief's organisation words (plus "team"), to tell labels that name people from those that do not.
_ORG_WORDS = {"staff", "newsroom", "desk", "agency", "team", "inc", "ltd", "llc", "gmbh", "media", "news"}
_AGENCIES = {"reuters", "afp", "ap", "dpa"}


def fold(text: str | None) -> str:
    """NFKC, case-folded, whitespace folded: the form titles and names are compared in."""
    return " ".join(unicodedata.normalize("NFKC", text or "").casefold().split())


def author_set(value: str | Iterable[str] | None) -> set[str]:
    """A label ("A, B and C") or a list of names as the set of folded names."""
    if not value:
        return set()
    items = [value] if isinstance(value, str) else list(value)
    return {f for item in items for part in _AUTHOR_SPLIT.split(item) if (f := fold(part))}


def names_people(label: str | None, sitename: str | None, url: str) -> bool:
    """The label names only people, by the brief's rules (independent of the extractor under test)."""
    names = author_set(label)
    if not names:
        return False
    own = {re.sub(r"\W+", "", fold(x)) for x in (sitename, (urlsplit(url).hostname or "").split(".")[-2:][0]) if x}
    for name in names:
        words = set(re.findall(r"\w+", name))
        if len(name.split()) < 2 or words & (_ORG_WORDS | _AGENCIES) or re.sub(r"\W+", "", name) in own:
            return False
    return True


def set_f1(pred: set[str], true: set[str]) -> float:
    if not pred or not true:
        return 0.0
    hit = len(pred & true)
    return 2 * hit / (len(pred) + len(true))


@dataclass
class Tally:
    """One extractor's scores, accumulated page by page."""

    title_hits: int = 0
    pages: int = 0
    author_f1: list[float] = field(default_factory=list)  # pages whose label names an author
    people_f1: list[float] = field(default_factory=list)  # pages whose label names only people
    no_author_pages: int = 0
    spurious: int = 0  # pages whose label names nobody, given an author
    day_hits: int = 0
    day_pages: int = 0
    zoned: int = 0
    seconds: float = 0.0

    def add(
        self, truth: dict, title: str | None, authors: set[str], published: str | None, seconds: float, people: bool
    ) -> None:
        self.pages += 1
        self.seconds += seconds
        self.title_hits += bool(title) and fold(title) == fold(truth.get("title"))
        true_authors = author_set(truth.get("author"))
        if true_authors:
            self.author_f1.append(set_f1(authors, true_authors))
            if people:
                self.people_f1.append(self.author_f1[-1])
        else:
            self.no_author_pages += 1
            self.spurious += bool(authors)
        if truth.get("published"):
            self.day_pages += 1
            self.day_hits += bool(published) and published[:10] == truth["published"][:10]
        self.zoned += bool(published) and bool(re.search(r"T\d\d:\d\d(:\d\d)?([+-]\d\d:\d\d|Z)$", published or ""))

    def summary(self) -> dict[str, float]:
        f1 = sum(self.author_f1) / max(1, len(self.author_f1))
        all_pages = (sum(self.author_f1) + self.no_author_pages - self.spurious) / max(1, self.pages)
        return {
            "title_exact": self.title_hits / max(1, self.pages),
            "author_f1": f1,
            "author_spurious": self.spurious / max(1, self.no_author_pages),
            "author_f1_all_pages": all_pages,
            "author_f1_people": sum(self.people_f1) / max(1, len(self.people_f1)),
            "published_day": self.day_hits / max(1, self.day_pages),
            "zoned_time": self.zoned / max(1, self.pages),
            "ms_per_page": 1000 * self.seconds / max(1, self.pages),
        }


def run(limit: int | None = None) -> dict[str, dict[str, float]]:
    """Both extractors over wcxb-dev's article pages, interleaved page by page."""
    import trafilatura
    from trafilatura.metadata import extract_metadata as trafilatura_metadata
    from trafilatura.utils import load_html

    from pipeline.stages.metadata import extract_metadata

    logging.disable(logging.WARNING)  # trafilatura logs every page it finds no body on
    pages = load_set("wcxb-dev")
    truth = json.loads((SETS["wcxb-dev"] / "ground-truth.json").read_text(encoding="utf-8"))
    keys = sorted(pages.html)[:limit]
    ours, theirs, theirs_meta, parse = Tally(), Tally(), Tally(), Tally()
    for key in keys:
        html, url, label = pages.html[key], pages.urls[key], truth[key]
        t0 = time.perf_counter()
        tree = load_html(html)
        t_parsed = time.perf_counter()
        site = tree.xpath("//meta[@property='og:site_name']/@content")
        people = names_people(label.get("author"), site[0] if site else None, url)
        t1 = time.perf_counter()
        meta = extract_metadata(tree, url)
        t2 = time.perf_counter()
        doc = trafilatura_metadata(tree, default_url=url)
        t3 = time.perf_counter()
        bare = trafilatura.bare_extraction(html, url=url, with_metadata=True)
        t4 = time.perf_counter()
        parse.add(label, None, set(), None, t_parsed - t0, people)
        ours.add(label, meta.title, author_set(meta.authors), meta.published, t2 - t1, people)
        theirs_meta.add(label, doc.title, author_set(doc.author), doc.date, t3 - t2, people)
        theirs.add(
            label,
            bare.title if bare else None,
            author_set(bare.author if bare else None),
            bare.date if bare else None,
            t4 - t3,
            people,
        )
    # The page-type decision runs on every page, metadata with it: its cost on pages that are not articles
    # (listings, products, docs: fewer structured dates, so htmldate runs more often) is shown too.
    others = sorted(pages.others)[:limit]
    other_seconds = 0.0
    for key in others:
        tree = load_html(pages.others[key])
        if tree is None:
            continue
        t0 = time.perf_counter()
        extract_metadata(tree, truth[key].get("url") or f"https://benchmark.invalid/{key}")
        other_seconds += time.perf_counter() - t0
    return {
        "news-ingest extract_metadata": ours.summary(),
        "  same, non-article pages": {"ms_per_page": 1000 * other_seconds / max(1, len(others))},
        "trafilatura bare_extraction": theirs.summary(),
        "trafilatura extract_metadata": theirs_meta.summary(),
        "lxml parse (load_html)": {"ms_per_page": parse.summary()["ms_per_page"]},
        "_pages": {
            "pages": len(keys),
            "with_author": len(ours.author_f1),
            "people_labels": len(ours.people_f1),
            "with_day": ours.day_pages,
            "non_article_pages": len(others),
        },
    }


def print_table(results: dict[str, dict[str, float]]) -> None:
    counts = results["_pages"]
    print(
        f"wcxb-dev: {counts['pages']} article pages, {counts['with_author']} with an author label "
        f"({counts['people_labels']} naming only people), {counts['with_day']} with a published day"
    )
    cols = [
        "title_exact",
        "author_f1",
        "author_f1_people",
        "author_spurious",
        "author_f1_all_pages",
        "published_day",
        "zoned_time",
    ]
    heads = ["title", "author F1", "F1 people", "spurious", "F1 all pages", "day", "zoned", "ms/page"]
    print(f"{'':30s}" + "".join(f"{h:>13s}" for h in heads))
    for name, row in results.items():
        if name.startswith("_"):
            continue
        cells = "".join(f"{row[c]:13.3f}" if c in row else f"{'':>13s}" for c in cols)
        print(f"{name:30s}{cells}{row['ms_per_page']:13.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N pages (by id)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    results = run(args.limit)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
