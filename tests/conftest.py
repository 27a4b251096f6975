"""Shared fixtures and helpers for the test suite."""
import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)


def pytest_collection_modifyitems(config, items):
    if not config.getoption("markexpr"):
        # The slow tier runs only when asked for with -m (e.g. -m slow).
        slow = pytest.mark.skip(reason="slow tier: run with -m slow")
        for item in items:
            if item.get_closest_marker("slow") is not None:
                item.add_marker(slow)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
