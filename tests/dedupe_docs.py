"""Generated articles for the dedupe index tests: one story per seed, and a copy with boilerplate added."""

from __future__ import annotations

import random

from benchmarks.dedupe_data import Topic, render, story


def article(seed: int) -> str:
    rng = random.Random(seed)
    headline, paras = story(rng, Topic(rng))
    return render(headline, paras)


def docs(seeds: range, host: str) -> list[dict]:
    """One document per seed at `https://<host>.example/<seed>`."""
    return [{"url": f"https://{host}.example/{s}", "text": article(s)} for s in seeds]


def copy_of(text: str) -> str:
    """The same story as another outlet prints it: a newsletter line inside, a copyright line after."""
    return text.replace("\n", "\nSign up for our newsletter\n", 1) + "\nCopyright 2026 Other Outlet."
