"""Search spaces: typed architecture specs, sampling/mutation, graph export and model builders."""

from __future__ import annotations

from importlib import import_module

from spaces.base import SearchSpace, SizeCap, SpecTooLarge, TaskInfo

__all__ = ["SearchSpace", "SizeCap", "SpecTooLarge", "TaskInfo", "get_space", "list_spaces"]

# name -> "module:Class"; imported lazily so `--help` stays fast.
_REGISTRY: dict[str, str] = {
    "nb201": "spaces.nb201:NB201Space",
    "hierarchical": "spaces.hierarchical:HierarchicalSpace",
    "ctr": "spaces.ctr:CTRSpace",
}


def list_spaces() -> list[str]:
    return sorted(_REGISTRY)


def get_space(name: str) -> SearchSpace:
    """Return an instance of the space registered under ``name``."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown space {name!r}; choose one of: {', '.join(list_spaces())}") from None
    module_name, class_name = target.split(":")
    return getattr(import_module(module_name), class_name)()
