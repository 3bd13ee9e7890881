"""Secrets never reach disk or the console: every string the harness writes or prints from an
untrusted or user-given source (LLM replies, server errors, repair prompts, ``--api-base``, the
command line) passes through :func:`redact` first.

What is replaced by ``[redacted]``:

* the value of every environment variable whose name says it holds a secret (``*_API_KEY``,
  ``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``; values of 8+ characters);
* obvious key shapes: ``sk-…``/``pk-…``/``rk-…``/``gsk-…``/``xai-…`` keys, ``Bearer …``
  credentials, the value after ``Authorization:``/``api_key=``/``x-api-key:`` (any scheme),
  ``AIza…`` (Google) and ``AKIA…`` (AWS) ids, ``ghp_…`` (GitHub) tokens;
* in URLs: the user-info (``user:pass@``) and every query-string value (``?key=…``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

__all__ = ["redact", "redact_url", "redact_tree", "REDACTED", "secret_values"]

REDACTED = "[redacted]"
_SECRET_NAMES = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # a credential after its header or field name: "Authorization: Basic …", "api_key": "…"
    (re.compile(r"(?i)\b(authorization|api[-_]?key|x-api-key|access[-_]?token)(\"?'?\s*[:=]\s*\"?'?)"
                r"(?:(?:bearer|basic|token)\s+)?[A-Za-z0-9._~+/=\-]{8,}"), r"\1\2" + REDACTED),
    (re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=\-]{8,}"), "Bearer " + REDACTED),
    (re.compile(r"\b(?:sk|pk|rk|gsk|xai)-[A-Za-z0-9_\-]{8,}"), REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"), REDACTED),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), REDACTED),
]
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s\"'<>`]+")


def secret_values() -> list[str]:
    """The environment's secret values, longest first (so a key containing another is hidden
    whole)."""
    values = {v for name, v in os.environ.items()
              if v and len(v) >= 8 and any(m in name.upper() for m in _SECRET_NAMES)}
    return sorted(values, key=len, reverse=True)


def redact_url(url: str) -> str:
    """A URL with its user-info and every query-string value replaced; scheme, host, port and
    path are kept (they say where, not who)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0),
              default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rsplit("@", 1)[1]
    path, qmark, query = tail.partition("?")
    if qmark:
        query, hash_, fragment = query.partition("#")
        params = [p.split("=", 1)[0] + ("=" + REDACTED if "=" in p else "") for p in query.split("&")]
        tail = path + "?" + "&".join(params) + hash_ + fragment
    return f"{scheme}://{netloc}{tail}"


def redact(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with every secret this module knows about replaced by ``[redacted]``;
    ``secrets`` defaults to :func:`secret_values` (pass it to read the environment once)."""
    if not text:
        return text
    for value in secret_values() if secrets is None else secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    return text


def redact_tree(value: Any, default: Callable[[Any], Any] | None = None,
                secrets: list[str] | None = None) -> Any:
    """A JSON-ready copy of ``value`` with every string (keys too) redacted; tuples and sets
    become lists, and ``default`` converts any other object first (as ``json.dumps`` would)."""
    if secrets is None:
        secrets = secret_values()
    if isinstance(value, str):
        return redact(value, secrets)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {redact(k, secrets) if isinstance(k, str) else k: redact_tree(v, default, secrets)
                for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_tree(v, default, secrets) for v in value]
    if default is None:
        return value
    return redact_tree(default(value), default, secrets)
