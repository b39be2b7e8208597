"""Shared fixtures for the host tests: the motion model's corpus, rendered once."""

from __future__ import annotations

import os

import pytest

from dermaroll import motion, replay

CORPUS_SIZE = 32
CORPUS_SEED = 0


@pytest.fixture(scope="session")
def corpus() -> list[motion.Rendered]:
    return motion.generate_corpus(CORPUS_SIZE, CORPUS_SEED)


@pytest.fixture(scope="session")
def have_micropython() -> bool:
    """True when the MicroPython interpreter is here; skips (or fails on CI) otherwise."""
    if replay.find_micropython() is None:
        msg = "the MicroPython interpreter is not installed"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must run the MicroPython replay")
        pytest.skip(msg)
    return True
