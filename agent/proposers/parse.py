"""Reply text → validated specs. LLM output is untrusted: sizes and nesting depth are bounded
(before parsing, so no reply can exhaust the stack), JSON is parsed (never evaluated), every spec
is validated by the space's pydantic model and size-capped, and a validation error quotes the
values that were sent (bounded)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from spaces.base import SearchSpace, SizeCap, SpecTooLarge, TaskInfo

__all__ = ["ParsedItem", "parse_reply", "extract_json", "nesting_depth", "MAX_REPLY_CHARS",
           "MAX_SPECS", "MAX_DEPTH"]

MAX_REPLY_CHARS = 200_000
MAX_SPECS = 64
#: deepest JSON nesting read: {"proposals": [spec]} with the hierarchical space's lists is ~6
MAX_DEPTH = 32
#: how many places in a prose reply a JSON value is looked for
MAX_STARTS = 200
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


@dataclass
class ParsedItem:
    """One spec of a reply: the validated spec, or the error that names what was wrong."""

    raw: Any
    spec: BaseModel | None = None
    spec_hash: str | None = None
    error: str | None = None


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting of ``text``, counting ``[``/``{`` outside JSON strings
    (a linear scan; prose around the JSON counts too, which only errs towards deeper)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest


def _value_depth(value: Any) -> int:
    """Nesting depth of a parsed value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


class _TooDeep(ValueError):
    pass


def _loads(text: str) -> Any:
    try:
        value = json.loads(text)
    except RecursionError:
        raise _TooDeep(f"the JSON nests deeper than {MAX_DEPTH} levels") from None
    if _value_depth(value) > MAX_DEPTH:
        raise _TooDeep(f"the JSON nests deeper than {MAX_DEPTH} levels")
    return value


def extract_json(text: str) -> Any:
    """The first JSON value in ``text``: the whole text, a fenced block, or embedded in prose.

    Raises ``ValueError`` for text that nests brackets deeper than :data:`MAX_DEPTH` (checked
    before parsing) or holds no JSON object or list."""
    if (depth := nesting_depth(text)) > MAX_DEPTH:
        raise ValueError(f"the reply nests brackets {depth} levels deep; at most {MAX_DEPTH} are read")
    stripped = text.strip()
    try:
        return _loads(stripped)
    except _TooDeep:
        raise
    except ValueError:
        pass
    for block in _FENCE.findall(text):
        try:
            return _loads(block)
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for n, m in enumerate(re.finditer(r"[\[{]", text)):
        if n >= MAX_STARTS:
            break
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except (ValueError, RecursionError):
            continue
        if isinstance(value, (dict, list)) and _value_depth(value) <= MAX_DEPTH:
            return value
    raise ValueError("the reply holds no JSON object or list")


def _items(value: Any) -> list[Any]:
    """``{"proposals": [...]}``, a bare list of specs, or one bare spec."""
    if isinstance(value, dict) and "proposals" in value:
        value = value["proposals"]
        if not isinstance(value, list):
            raise ValueError('"proposals" must be a list of specs')
    elif isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"expected an object or a list, got {type(value).__name__}")
    if len(value) > MAX_SPECS:
        raise ValueError(f"the reply holds {len(value)} specs; at most {MAX_SPECS} are read")
    return value


def parse_reply(text: str, space: SearchSpace, task: TaskInfo, cap: SizeCap | None = None,
                width_mult: float = 1.0) -> list[ParsedItem]:
    """Validate every spec of a reply. Raises ``ValueError`` when the reply as a whole is unusable
    (too long, no JSON, wrong shape); per-spec problems are in each item's ``error``."""
    if len(text) > MAX_REPLY_CHARS:
        raise ValueError(f"the reply has {len(text):,} characters; at most {MAX_REPLY_CHARS:,} are read")
    out = []
    for raw in _items(extract_json(text)):
        item = ParsedItem(raw=raw)
        try:
            if not isinstance(raw, dict):
                raise ValueError(f"a spec must be a JSON object, got {type(raw).__name__}")
            item.spec = space.parse(raw)
            space.check_size(item.spec, task, cap, width_mult)
            item.spec_hash = space.canonical_hash(item.spec)
        except ValidationError as err:
            item.spec, item.error = None, f"invalid spec: {space.validation_error_text(err)}"
        except SpecTooLarge as err:
            item.spec, item.error = None, str(err)
        except ValueError as err:
            item.spec, item.error = None, str(err)
        out.append(item)
    return out
