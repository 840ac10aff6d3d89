"""Quality gates every stage agrees on: how many words make an article, which language a text is in."""

from __future__ import annotations

#: Fewer words than this: not an article ("too_short" after cleaning, "no_article_text" in
#: extraction). News briefs run to ~50 words; the shortest real article body in the extraction
#: benchmark has 66 tokens.
MIN_WORDS = 40


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of the text (py3langid), None for too little text to tell."""
    import py3langid  # its model loads on import (~0.3 s): only where a language is wanted

    sample = text[:1_000]  # a few paragraphs give a stable guess; classify() is linear in length
    if len(sample.strip()) < 20:
        return None
    lang, _ = py3langid.classify(sample)
    return lang
