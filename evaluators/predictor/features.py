"""Features of a spec for the base predictors, computed before any training.

* ``encode_spec``: a one-hot per categorical choice of the spec, read from the space's JSON
  Schema (``enum`` values; fixed-length lists one-hot per position). Works for every space.
* ``graph_features``: op counts and graph statistics of ``space.to_graph(spec)`` (nodes, edges,
  longest input→output path, in/out degrees) plus the graph's ``global_features``.
* ``cost_features``: log params and log FLOPs for a task (skipped in tabular mode).
* ``curve_features``: an early learning curve → last values and relative rates of change.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pydantic import BaseModel

    from spaces.base import SearchSpace, TaskInfo

__all__ = ["schema_slots", "encode_spec", "graph_features", "cost_features", "curve_features",
           "static_features"]


def _resolve(schema: dict, node: dict) -> dict:
    ref = node.get("$ref")
    if ref:
        return schema["$defs"][ref.split("/")[-1]]
    return node


@lru_cache(maxsize=16)
def _slots(space_name: str, schema_text: str) -> list[tuple[str, int | None, tuple]]:
    import json

    schema = json.loads(schema_text)
    slots = []
    for name, prop in schema["properties"].items():
        prop = _resolve(schema, prop)
        if "enum" in prop:
            slots.append((name, None, tuple(prop["enum"])))
        elif prop.get("type") == "array":
            items = _resolve(schema, prop["items"])
            for i in range(prop.get("maxItems", 0)):
                slots.append((name, i, tuple(items.get("enum", ()))))
    return slots


def schema_slots(space: SearchSpace) -> list[tuple[str, int | None, tuple]]:
    """Every categorical choice of the space's specs: (field, list index or None, values)."""
    import json

    return _slots(space.name, json.dumps(space.json_schema(), sort_keys=True))


def encode_spec(space: SearchSpace, spec: BaseModel) -> np.ndarray:
    data = spec.model_dump()
    out = []
    for name, index, values in schema_slots(space):
        value = data[name] if index is None else data[name][index]
        out += [float(value == v) for v in values]
    return np.asarray(out, dtype=np.float32)


def graph_features(space: SearchSpace, spec: BaseModel) -> np.ndarray:
    g = space.to_graph(spec)
    x = g.x.numpy()
    n = g.num_nodes
    src, dst = (g.edge_index.numpy() if g.edge_index.numel() else (np.zeros(0, int), np.zeros(0, int)))
    longest = np.zeros(n)  # nodes are created in topological order
    for s, d in sorted(zip(src.tolist(), dst.tolist(), strict=True), key=lambda e: e[1] if e[1] != 1 else n):
        longest[d] = max(longest[d], longest[s] + 1)
    indeg = np.bincount(dst, minlength=n) if len(dst) else np.zeros(n)
    outdeg = np.bincount(src, minlength=n) if len(src) else np.zeros(n)
    stats = [n, len(src), longest[1] if n > 1 else 0.0, indeg.max(initial=0), outdeg.max(initial=0),
             float(len(src) > 0 and longest[1] > 0)]
    glob = g.global_features.numpy().ravel() if hasattr(g, "global_features") else np.zeros(0)
    return np.concatenate([x.sum(0), np.asarray(stats, dtype=np.float32), glob]).astype(np.float32)


def cost_features(space: SearchSpace, spec: BaseModel, task_info: TaskInfo) -> np.ndarray:
    cost = space.cost(spec, task_info)
    return np.log10(np.asarray([cost["params"] + 1, cost["flops"] + 1], dtype=np.float64)).astype(np.float32)


def curve_features(curves: dict[str, list[float]] | None) -> np.ndarray:
    """Last value and relative change over the last epoch, for loss, accuracy and grad norm."""
    out = []
    for key in ("train_loss", "val_acc", "grad_norm"):
        values = (curves or {}).get(key) or [np.nan]
        last, prev = values[-1], values[-2] if len(values) > 1 else values[-1]
        out += [last, (last - prev) / (abs(prev) + 1e-8)]
    return np.asarray(out, dtype=np.float32)


def static_features(space: SearchSpace, spec: BaseModel, task_info: TaskInfo | None = None) -> np.ndarray:
    parts = [encode_spec(space, spec), graph_features(space, spec)]
    if task_info is not None:
        parts.append(cost_features(space, spec, task_info))
    return np.concatenate(parts)
