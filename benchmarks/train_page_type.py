"""Train the page-type model (`pipeline/stages/page_type_model.json`) on wcxb-dev.

    python -m benchmarks.train_page_type [--workers N] [--refresh] [--keep 0.993] [--l2 30]

Logistic regression (numpy, Newton's method with an L2 penalty) over `pipeline.stages.page_type.page_features`
plus one vocabulary feature per field (`vocab_features`: hashed words of the text, URL path and title, each
bucket weighted by its naive-Bayes log-count ratio), on the wcxb-dev pages that extraction gives text for (the
others are refused before the page type is asked). The vocabulary tables a training row sees are learned
without that row's fold, so the regression does not learn to trust an in-sample table.
The threshold is set from 5-fold cross-validated scores, folds split by site, so that `--keep` of the
articles are kept on sites the model never saw: the decision leans to keeping.

The extracted texts are cached under the temp folder (extraction takes ~100 s for the set); `--refresh`
redoes them (the cache is keyed by the extractor's version and extract.py's source).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lxml.html import HtmlElement
from trafilatura.utils import load_html

from pipeline.core.config import CleaningRules
from pipeline.core.errors import NotAnArticle
from pipeline.core.paths import ROOT
from pipeline.runtime.pool import TaskFailure, bounded_map
from pipeline.stages import extract as extract_module
from pipeline.stages.page_type import MODEL_PATH, VOCAB_BUCKETS, VOCAB_FIELDS, page_features, vocab_buckets
from pipeline.text.decoding import decode_html
from pipeline.text.jsonld import jsonld_nodes, node_types

SET = ROOT.parent / "shared" / "benchmarks" / "wcxb-dev"
FOLDS = 5
#: Labels that are articles; every other wcxb-dev label is a page a news pipeline refuses.
ARTICLE_LABELS = frozenset({"article"})
#: The share of (cross-validated) articles the threshold keeps by default.
DEFAULT_KEEP = 0.993
DEFAULT_L2 = 30.0


@dataclass
class Page:
    """One wcxb-dev page with what extraction made of it (`refused`: its NotAnArticle reason, or None)."""

    key: str
    url: str
    label: str
    domain: str
    html: str
    text: str
    refused: str | None

    @property
    def is_article(self) -> bool:
        return self.label in ARTICLE_LABELS


def site_of(url: str) -> str:
    """The registered domain (`forums.bbc.co.uk` -> `bbc.co.uk`), from tldextract's bundled suffix list."""
    import tldextract  # a dependency of trafilatura's courlan; offline: no suffix-list download

    parts = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)(url)
    return parts.top_domain_under_public_suffix or parts.domain or url


def fold_of(domain: str, folds: int = FOLDS) -> int:
    """A site's fold: stable across runs and machines (crc32), so one site is never in two folds."""
    return zlib.crc32(domain.encode()) % folds


def read_html(key: str) -> str:
    """A page's HTML, decoded as the crawl decodes a response without a charset header."""
    return decode_html(None, gzip.decompress((SET / "html" / f"{key}.html.gz").read_bytes()))


#: Extraction as the pipeline runs it, minus the page-type decision itself (its input is what extraction left).
_WITHOUT_PAGE_TYPE = CleaningRules(disable=[extract_module.PAGE_TYPE_RULE])


def _extract_one(item: tuple[str, str]) -> dict:
    key, url = item
    try:
        text = extract_module.extract_page(read_html(key), url, rules=_WITHOUT_PAGE_TYPE)["text"]
        return {"text": text, "refused": None}
    except NotAnArticle as exc:
        return {"text": "", "refused": exc.reason}


def _cache_path() -> Path:
    source = Path(extract_module.__file__).read_bytes()
    how = repr(_WITHOUT_PAGE_TYPE.disable).encode()  # texts of extraction without the page-type decision
    digest = hashlib.sha256(extract_module.EXTRACTOR_VERSION.encode() + source + how).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"news-ingest-page-type-texts-{digest}.json"


def extracted_texts(items: Sequence[tuple[str, str]], *, workers: int = 1, refresh: bool = False) -> dict[str, dict]:
    """{key: {"text", "refused"}} for (key, url) items: from the cache, else extracted (and cached)."""
    path = _cache_path()
    if path.exists() and not refresh:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if all(key in cached for key, _ in items):
            return cached
    out: dict[str, dict] = {}
    for (key, _), result in zip(items, bounded_map(_extract_one, items, workers=workers, timeout=60)):
        out[key] = result if not isinstance(result, TaskFailure) else {"text": "", "refused": result.reason}
    path.write_text(json.dumps(out), encoding="utf-8")
    return out


def load_pages(*, workers: int = 1, refresh: bool = False) -> list[Page]:
    """Every wcxb-dev page, with its extracted text."""
    truth = json.loads((SET / "ground-truth.json").read_text(encoding="utf-8"))
    items = [(key, entry["url"]) for key, entry in sorted(truth.items())]
    texts = extracted_texts(items, workers=workers, refresh=refresh)
    return [
        Page(key, url, truth[key]["page_type"], site_of(url), read_html(key), texts[key]["text"], texts[key]["refused"])
        for key, url in items
    ]


def page_inputs(html: str) -> tuple[HtmlElement | None, list[str], str | None]:
    """What the pipeline hands `classify_page` besides the URL and text: (tree, JSON-LD types, og:type)."""
    tree = load_html(html)
    if tree is None:
        return None, [], None
    types = [t for node in jsonld_nodes(tree) for t in node_types(node)]
    og = tree.xpath("//meta[@property='og:type']/@content")
    return tree, types, (og[0] if og else None)


def feature_rows(pages: Iterable[Page]) -> tuple[list[str], np.ndarray, list[dict[str, frozenset[int]]]]:
    """(feature names, one row per page, each page's vocabulary buckets)."""
    names: list[str] = []
    rows = []
    buckets = []
    for page in pages:
        tree, types, og = page_inputs(page.html)
        assert tree is not None, page.key
        values = page_features(tree, page.url, page.text, schema_types=types, og_type=og)
        names = names or list(values)
        rows.append([values[n] for n in names])
        buckets.append(vocab_buckets(tree, page.url, page.text))
    return names, np.asarray(rows, dtype=float), buckets


@dataclass
class Fit:
    """A fitted model in standardised feature space."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def logits(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean) / self.scale) @ self.weights + self.bias

    def scores(self, X: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.clip(self.logits(X), -60, 60)))


def fit(X: np.ndarray, y: np.ndarray, *, l2: float = DEFAULT_L2, iterations: int = 50) -> Fit:
    """L2-penalised logistic regression by Newton's method, classes weighted to count equally."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-9] = 1.0
    Z = np.hstack([(X - mean) / scale, np.ones((len(X), 1))])
    sample = np.where(y == 1, 0.5 / max(1, y.sum()), 0.5 / max(1, (1 - y).sum())) * len(y)
    penalty = np.full(Z.shape[1], l2)
    penalty[-1] = 0.0  # the bias is not penalised
    beta = np.zeros(Z.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(Z @ beta, -60, 60)))
        grad = Z.T @ (sample * (p - y)) + penalty * beta
        hess = (Z * (sample * p * (1 - p))[:, None]).T @ Z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return Fit(mean, scale, beta[:-1], float(beta[-1]))


def keep_threshold(article_scores: np.ndarray, keep: float) -> float:
    """The highest threshold that keeps at least `keep` of these articles (score >= threshold is kept)."""
    ordered = np.sort(article_scores)
    lost = int(np.floor((1.0 - keep) * len(ordered)))  # articles allowed below the threshold
    return float(ordered[lost]) if len(ordered) else 0.5


@dataclass
class Training:
    """The training set: pages with extracted text, their structural features `X` (columns `names`), vocabulary
    buckets, labels `y` (1 = article) and site folds."""

    pages: list[Page]
    names: list[str]
    X: np.ndarray
    buckets: list[dict[str, frozenset[int]]]
    y: np.ndarray
    folds: np.ndarray

    def vocab_tables(self, rows: np.ndarray, alpha: float = 1.0) -> dict[str, np.ndarray]:
        """{field: per-bucket log P(bucket | article) - log P(bucket | other)} over `rows`, Laplace-smoothed."""
        n_pos = float((self.y[rows] == 1).sum())
        n_neg = float(len(rows) - n_pos)
        tables = {}
        for name in VOCAB_FIELDS:
            pos = np.full(VOCAB_BUCKETS, alpha)
            neg = np.full(VOCAB_BUCKETS, alpha)
            for i in rows:
                (pos if self.y[i] == 1 else neg)[list(self.buckets[i][name])] += 1
            tables[name] = np.log(pos / (n_pos + 2 * alpha)) - np.log(neg / (n_neg + 2 * alpha))
        return tables

    def design(self, rows: np.ndarray, tables: dict[str, np.ndarray]) -> np.ndarray:
        """The model's input for `rows`: structural features, then the vocabulary features from `tables`."""
        vocab = [
            [
                float(tables[f][list(self.buckets[i][f])].sum()) / max(1, len(self.buckets[i][f])) ** 0.5
                for f in VOCAB_FIELDS
            ]
            for i in rows
        ]
        return np.hstack([self.X[rows], np.asarray(vocab, dtype=float).reshape(len(rows), len(VOCAB_FIELDS))])

    @property
    def feature_names(self) -> list[str]:
        return [*self.names, *(f"vocab_{f}" for f in VOCAB_FIELDS)]

    def fit(self, rows: np.ndarray, *, l2: float) -> tuple[Fit, dict[str, np.ndarray]]:
        """(the regression over `rows`, the vocabulary tables over all of `rows`). Each row's vocabulary features
        come from tables learned without its own fold."""
        Z = np.zeros((len(rows), len(self.feature_names)))
        for k in np.unique(self.folds[rows]):
            inside = self.folds[rows] == k
            Z[inside] = self.design(rows[inside], self.vocab_tables(rows[~inside]))
        return fit(Z, self.y[rows], l2=l2), self.vocab_tables(rows)

    def out_of_fold(self, rows: np.ndarray, *, l2: float) -> np.ndarray:
        """Scores for `rows`, each from a model (and tables) that never saw its fold."""
        scores = np.zeros(len(rows))
        for k in np.unique(self.folds[rows]):
            test = self.folds[rows] == k
            model, tables = self.fit(rows[~test], l2=l2)
            scores[test] = model.scores(self.design(rows[test], tables))
        return scores

    def model(self, rows: np.ndarray, *, l2: float, keep: float, about: dict | None = None) -> dict:
        """The model document trained on `rows`, its threshold keeping `keep` of their cross-validated articles."""
        oof = self.out_of_fold(rows, l2=l2)
        model, tables = self.fit(rows, l2=l2)
        threshold = keep_threshold(oof[self.y[rows] == 1], keep)
        return model_document(self.feature_names, model, threshold, tables, **(about or {}))


def model_document(
    names: Sequence[str], model: Fit, threshold: float, tables: dict[str, np.ndarray], **about: object
) -> dict:
    """The JSON document `page_type.load_model` reads, for a fit over the features `names`."""
    return {
        "about": "P(article) = sigmoid(bias + sum(weight * (value - mean) / scale)); kept when >= threshold. "
        "Written by benchmarks/train_page_type.py; features: pipeline.stages.page_type.page_features and "
        "vocab_features (vocabulary: per-bucket log-count ratios per field).",
        **about,
        "features": list(names),
        "mean": dict(zip(names, np.round(model.mean, 6).tolist())),
        "scale": dict(zip(names, np.round(model.scale, 6).tolist())),
        "weights": dict(zip(names, np.round(model.weights, 6).tolist())),
        "bias": round(model.bias, 6),
        "threshold": round(threshold, 6),
        "vocabulary": {name: np.round(table, 3).tolist() for name, table in tables.items()},
    }


def training_data(pages: Sequence[Page]) -> Training:
    """The pages with extracted text, featurised."""
    usable = [p for p in pages if p.refused is None]
    names, X, buckets = feature_rows(usable)
    y = np.array([1.0 if p.is_article else 0.0 for p in usable])
    folds = np.array([fold_of(p.domain) for p in usable])
    return Training(usable, names, X, buckets, y, folds)


def train(pages: Sequence[Page], *, l2: float = DEFAULT_L2, keep: float = DEFAULT_KEEP) -> dict:
    """The model trained on every page, its threshold from cross-validated scores (see the module docstring)."""
    data = training_data(pages)
    about = {
        "trained_on": f"wcxb-dev: {len(data.pages)} pages with extracted text ({int(data.y.sum())} articles)",
        "l2": l2,
        "keep_target": keep,
    }
    return data.model(np.arange(len(data.y)), l2=l2, keep=keep, about=about)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="extraction processes for an empty cache")
    parser.add_argument("--refresh", action="store_true", help="re-extract the texts (ignore the cache)")
    parser.add_argument("--keep", type=float, default=DEFAULT_KEEP, help="share of articles the threshold keeps")
    parser.add_argument("--l2", type=float, default=DEFAULT_L2, help="L2 penalty on the standardised weights")
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    args = parser.parse_args(argv)
    model = train(load_pages(workers=args.workers, refresh=args.refresh), l2=args.l2, keep=args.keep)
    top = sorted(model["weights"].items(), key=lambda kv: -abs(kv[1]))[:10]
    # compact: the vocabulary tables are long lists of numbers
    args.out.write_text(json.dumps(model, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(model['features'])} features, threshold {model['threshold']:.3f}")
    for name, weight in top:
        print(f"  {name:28s} {weight:+.3f}")


if __name__ == "__main__":
    main()
