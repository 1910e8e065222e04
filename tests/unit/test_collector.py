"""A started process collects its youngest generation rarely and never walks what it built."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from sagaline.garbage_collector import OLDER_THRESHOLDS, YOUNG_THRESHOLD, settle_after_start


@pytest.fixture
def collector_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector_restored")
def test_settling_raises_the_thresholds_and_freezes_what_exists() -> None:
    kept = [object() for _ in range(10)]
    gc.unfreeze()
    settle_after_start()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    assert gc.get_freeze_count() >= len(kept)
