"""Networks as *plans* of repeated blocks, and their exact cost counted on the meta device.

A plan is a list of ``(factory, times)``: ``factory()`` makes one block, and the network applies
``times`` fresh copies in sequence. Deep search-space networks repeat one cell many times with
the same input shape, so the cost counts each distinct block once, on the ``meta`` device (no
real memory), and multiplies: the result equals counting the expanded network, at a fraction of
the time (the count runs on every proposal).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import torch
from torch import nn

__all__ = ["Plan", "expand", "plan_cost", "CostCache"]

Plan = Sequence[tuple[Callable[[], nn.Module], int]]


def expand(plan: Plan) -> list[nn.Module]:
    """The blocks of ``plan`` as fresh modules, each repeated block built ``times`` times."""
    return [factory() for factory, times in plan for _ in range(times)]


def plan_cost(plan: Plan, input_shape: tuple[int, ...]) -> dict[str, int]:
    """``{"params", "flops"}`` of the expanded plan for one sample (1 MAC = 2 FLOPs).

    Every block is built on the ``meta`` device and run once under ``FlopCounterMode``; a block
    repeated ``times`` > 1 must keep its input shape (checked), so its copies cost the same.
    """
    from torch.utils.flop_counter import FlopCounterMode

    params = flops = 0
    x = torch.empty((1, *input_shape), device="meta")
    with FlopCounterMode(display=False) as counter:
        for factory, times in plan:
            with torch.device("meta"):  # built on meta; run outside the (slow) device mode
                block = factory().eval()
            before = counter.get_total_flops()
            y = block(x)
            if times > 1 and y.shape != x.shape:
                raise ValueError(f"a block repeated {times} times maps {tuple(x.shape)} to "
                                 f"{tuple(y.shape)}; repeated blocks must keep their shape")
            flops += times * (counter.get_total_flops() - before)
            params += times * sum(p.numel() for p in block.parameters())
            x = y
    return {"params": int(params), "flops": int(flops)}


class CostCache:
    """A small LRU memo of costs: the same spec is costed by the filter, the size check and the
    evaluator, and an exact meta count takes tens of milliseconds."""

    def __init__(self, size: int = 4096):
        self.size, self._store = size, OrderedDict()

    def get(self, key: Hashable, compute: Callable[[], dict[str, int]]) -> dict[str, int]:
        if key in self._store:
            self._store.move_to_end(key)
        else:
            self._store[key] = compute()
            if len(self._store) > self.size:
                self._store.popitem(last=False)
        return dict(self._store[key])
