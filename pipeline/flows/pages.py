"""Pages in, articles out, with no bucket: the extract and clean stages' per-page work composed.

`article_from_html` is what `python -m pipeline extract` does for one page, `articles_from_items`
for JSON Lines of pages (on all cores); benchmarks and the quality gate measure the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from pipeline.core.config import CleaningRules
from pipeline.stages.clean import CleanStep
from pipeline.stages.extract import extract_outcomes, extract_page


def article_from_html(html: str, url: str, *, rules: CleaningRules | None = None, language: str | None = None) -> dict:
    """The cleaned article record of one page (text, metadata, `removed`, content hash, article id).

    Raises NotAnArticle when extraction or cleaning finds no article; `language` (ISO 639-1)
    rejects a text in another language, as a source's `language:` does.
    """
    record = extract_page(html, url, rules=rules)
    return CleanStep({"": rules}, {"": language})(record, {})


def articles_from_items(
    items: Iterable[dict],
    *,
    workers: int | None = None,
    timeout: float = 30,
    rules_for: Callable[[dict], CleaningRules | None] | None = None,
    step: CleanStep | None = None,
) -> Iterator[dict]:
    """Cleaned article records of {"url", "html", ...} items (or {"url", "error", "detail"}), in input order.

    Extraction and cleaning of a page run in the same worker, bounded together by `timeout`.
    `rules_for` gives an item's extraction rules; `step` its cleaning (by the item's "source").
    """
    for outcome in extract_outcomes(
        items, workers=workers, timeout=timeout, rules_for=rules_for, then=step or CleanStep()
    ):
        if not outcome.ok or outcome.then is None:
            yield outcome.record
        elif "error" in outcome.then:
            yield {"url": outcome.record.get("url"), **outcome.then}
        else:
            yield outcome.then
