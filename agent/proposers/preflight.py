"""Start-up checks of an LLM endpoint, made before the baseline trains, so that a run which
could never get a proposal fails in seconds with one line instead of after minutes of training.

None of them spends a token: whether litellm can tell which provider serves the model name
(:func:`unknown_provider`), the provider key a hosted model needs (:func:`missing_key`), whether
anything answers at the address of a server the user runs (:func:`unreachable`: ``--api-base``,
or ``ollama/…``'s ``OLLAMA_API_BASE`` / localhost:11434), and whether litellm's local price map
prices the model (:func:`has_price`; without a price its calls count as $0, so a cost cap could
not act). A hosted provider's reachability is not probed: its first call, retried, says what is
wrong.
"""

from __future__ import annotations

import os
from types import ModuleType

import httpx

from agent.proposers.base import ProposerFatal
from agent.redact import redact, redact_url

__all__ = ["unknown_provider", "missing_key", "server_address", "unreachable", "check_server", "has_price",
           "OLLAMA_DEFAULT"]

#: where litellm sends ``ollama/…`` models when neither --api-base nor OLLAMA_API_BASE is set
OLLAMA_DEFAULT = "http://localhost:11434"


def unknown_provider(litellm: ModuleType, model: str, api_base: str | None) -> str | None:
    """litellm's one-line reason when it cannot tell which provider serves ``model`` (a bare
    name it does not know, e.g. a typo of a hosted one), or None."""
    try:
        litellm.get_llm_provider(model=model, api_base=api_base)
    except Exception as err:  # litellm raises its BadRequestError; the first line says why
        return redact(str(err)).splitlines()[0] if str(err) else type(err).__name__
    return None


def has_price(litellm: ModuleType, model: str) -> bool:
    """Whether litellm's local price map prices ``model`` (a price of 0, as for ``ollama/…``,
    counts: it is known)."""
    try:
        litellm.cost_per_token(model=model, prompt_tokens=1, completion_tokens=1)
    except Exception:  # litellm's ModelNotMappedError, or a provider it cannot tell
        return False
    return True


def missing_key(litellm: ModuleType, model: str, api_base: str | None) -> str | None:
    """The provider key variable(s) a hosted model needs and the environment lacks, or None.

    Asked of litellm at start-up, because without a key litellm fails each call with a
    retryable-looking error. Servers given by ``--api-base`` and providers that need an address
    rather than a key (``ollama/…``) are not checked."""
    if api_base:
        return None
    try:
        env = litellm.validate_environment(model)
    except Exception:  # a model litellm cannot map: let the first call say what is wrong
        return None
    keys = [k for k in env.get("missing_keys", []) if k.endswith("_KEY")]
    return None if env.get("keys_in_environment") or not keys else " or ".join(keys)


def server_address(model: str, api_base: str | None) -> str | None:
    """The address of the server ``model`` will be called at when the user runs it (``--api-base``,
    or an ``ollama/…`` model's), or None for a hosted provider."""
    if api_base:
        return api_base
    if model.startswith(("ollama/", "ollama_chat/")):
        return os.environ.get("OLLAMA_API_BASE") or OLLAMA_DEFAULT
    return None


def unreachable(address: str, timeout_s: float = 5.0) -> str | None:
    """Why nothing answers at ``address``, as one line that quotes it (credentials redacted), or
    None when something does. Any HTTP reply counts as an answer, an error status included:
    only a refused or timed-out connection, an unknown host or a malformed address fails."""
    shown = redact_url(address)
    try:
        httpx.get(address, timeout=timeout_s, follow_redirects=False)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as err:
        return f"{shown!r} is not an http(s) address ({type(err).__name__})"
    except httpx.TimeoutException:
        return f"nothing answered at {shown!r} within {timeout_s:g} s"
    except httpx.TransportError as err:
        reason = redact(str(err)).splitlines()[0] if str(err) else type(err).__name__
        return f"nothing answers at {shown!r} ({reason})"
    return None


def check_server(model: str, api_base: str | None) -> None:
    """Raise :class:`ProposerFatal` when nothing answers at the server ``model`` will call."""
    address = server_address(model, api_base)
    if address is not None and (why := unreachable(address)) is not None:
        hint = ("start it (ollama serve) or give its address with --api-base" if not api_base
                else "start the server, or correct --api-base")
        raise ProposerFatal(f"{model}: {why}; {hint}")
