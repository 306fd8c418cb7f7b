"""Helpers shared by the panel's tests (test_ui, test_runs, test_bad_input_panel)."""
from __future__ import annotations

import time

import pytest
import torch

from tlkit import train


@pytest.fixture(autouse=True)
def one_thread():
    """Two torch threads on a loaded 2-core machine make tiny steps 50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def slow_step(delay: float):
    """supervised_step that sleeps ``delay`` s first, so "within one step" is measurable."""
    def step(model, batch, ctx):
        time.sleep(delay)
        return train.supervised_step(model, batch, ctx)
    return step


def wait_until(pred, timeout: float = 90.0) -> None:
    end = time.time() + timeout
    while not pred():
        if time.time() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)
