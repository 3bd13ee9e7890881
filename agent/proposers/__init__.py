"""Proposers and the factory that picks one from ``--model``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent.proposers.base import Proposal, ProposalContext, Proposer, ProposerFatal

if TYPE_CHECKING:
    from spaces.base import SearchSpace

__all__ = ["make_proposer", "Proposal", "ProposalContext", "Proposer", "ProposerFatal",
           "resolve_default_model", "open_proposer"]


def resolve_default_model(model: str | None) -> tuple[str, str | None]:
    """The model to use and, when the default had to fall back, the one-line reason.

    Without ``--model`` the default is the offline ``local`` model; when its extra is not
    installed the search falls back to ``builtin`` (a provider key in the environment never
    changes that: the main job does not go online by surprise).
    """
    if model is not None:
        return model, None
    try:
        from agent.proposers.local import local_model_available
    except ImportError:
        return "builtin", "the local LLM proposer is not part of this install; using --model builtin"
    ok, why = local_model_available()
    return ("local", None) if ok else ("builtin", f"local model unavailable ({why}); using --model builtin")


def make_proposer(model: str, *, space: SearchSpace, seed: int, api_base: str | None = None,
                  prompt: str | None = None) -> Proposer:
    """``builtin`` | ``replay:RUN_DIR`` | ``local`` | any litellm model name."""
    if model == "builtin":
        from agent.proposers.builtin import BuiltinProposer

        return BuiltinProposer(space, seed=seed)
    if model.startswith("replay:"):
        from agent.proposers.replay import ReplayProposer

        return ReplayProposer(Path(model.split(":", 1)[1]), space)
    if model == "local":
        from agent.proposers.local import make_local_proposer

        return make_local_proposer(api_base=api_base, prompt=prompt, seed=seed)
    try:
        from agent.proposers.llm import make_llm_proposer
    except ImportError as err:
        raise ProposerFatal(f"the LLM proposer is unavailable in this install: {err}") from None
    return make_llm_proposer(model, api_base=api_base, prompt=prompt, seed=seed)


def open_proposer(model: str | None, *, space: SearchSpace, seed: int, api_base: str | None = None,
                  prompt: str | None = None) -> tuple[Proposer, str, str | None]:
    """The proposer for ``--model`` (None = the offline default), its resolved name, and a
    one-line note when the default had to fall back to ``builtin``.

    A default ``local`` model that turns out unusable at start-up (weights cannot be assembled,
    the llama.cpp server does not come up) falls back to ``builtin`` too; an explicit
    ``--model local`` does not: its failure is the user's error to see.
    """
    resolved, note = resolve_default_model(model)
    fallback_on: tuple[type[BaseException], ...] = ()
    if model is None and resolved == "local":  # the local module imported: resolve checked it
        from agent.proposers.local import LocalModelUnavailable

        fallback_on = (LocalModelUnavailable,)
    try:
        return make_proposer(resolved, space=space, seed=seed, api_base=api_base,
                             prompt=prompt), resolved, note
    except fallback_on as err:
        note = f"local model unavailable ({err}); using --model builtin"
    return make_proposer("builtin", space=space, seed=seed), "builtin", note
