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
