"""Shared test helpers."""

from __future__ import annotations

import random

import pytest
from fedchain.netctl.process import port_is_free


def find_free_port_base(span: int = 30) -> int:
    """A base port with `span` free ports after it (embedded networks use base+1 .. base+22)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 45000, 50)
        if all(port_is_free("127.0.0.1", base + k) for k in range(span)):
            return base
    raise RuntimeError("no free range of ports on 127.0.0.1")


@pytest.fixture()
def free_port_base() -> int:
    return find_free_port_base()
