"""Shared fixtures for the search-space tests."""

import pytest
from torch import nn


@pytest.fixture
def param_devices(monkeypatch):
    """Device type of every parameter registered on any module while the test runs."""
    seen: list[str] = []
    original = nn.Module.register_parameter

    def spy(self, name, param):
        if param is not None:
            seen.append(param.device.type)
        return original(self, name, param)

    monkeypatch.setattr(nn.Module, "register_parameter", spy)
    return seen


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convs are dominated by thread start-up and contention on a shared CPU: one intra-op
    thread runs these tests' forward passes ~100x faster than the default here."""
    from evaluators.train import cpu_threads

    with cpu_threads(1):
        yield
