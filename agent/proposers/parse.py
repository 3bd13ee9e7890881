"""Reply text → validated specs. LLM output is untrusted: sizes are bounded, JSON is parsed (never
evaluated), every spec is validated by the space's pydantic model and size-capped."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from spaces.base import SearchSpace, SizeCap, SpecTooLarge, TaskInfo

__all__ = ["ParsedItem", "parse_reply", "extract_json", "MAX_REPLY_CHARS", "MAX_SPECS"]

MAX_REPLY_CHARS = 200_000
MAX_SPECS = 64
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


@dataclass
class ParsedItem:
    """One spec of a reply: the validated spec, or the error that names what was wrong."""

    raw: Any
    spec: BaseModel | None = None
    spec_hash: str | None = None
    error: str | None = None


def extract_json(text: str) -> Any:
    """The first JSON value in ``text``: the whole text, a fenced block, or embedded in prose."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    for block in _FENCE.findall(text):
        try:
            return json.loads(block)
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for m in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(value, (dict, list)):
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
