"""Shared fixtures: scoped float64 and strict dtype promotion."""

import jax
import pytest


@pytest.fixture
def strict_promotion():
    """Fail loudly on silent dtype promotion, such as float32 meeting float64.

    Not applied everywhere: optax 0.2.8's Adam mixes a Python float with its int32
    step count, which strict promotion rejects.
    """
    with jax.numpy_dtype_promotion("strict"):
        yield


@pytest.fixture
def x64():
    """Run one test with 64-bit floats, leaving the global setting alone."""
    with jax.enable_x64(True):
        yield
