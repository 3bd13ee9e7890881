"""Prompt templates: jinja2 files in ``prompts/`` rendered with ``StrictUndefined``.

``--prompt DIR`` swaps any of ``system.j2``, ``propose.j2``, ``repair.j2`` (missing ones fall back
to the defaults); ``--prompt FILE`` swaps ``propose.j2`` only. Every template is checked at
start-up: a variable that is not in the context below fails with its name.

Context of every template:

==================  =====================================================================
``space_name``      the search space (``nb201``, ``hierarchical``)
``space_description`` the space's ``describe()`` text: ops, constraints, an example spec
``spec_schema``     the spec's JSON Schema, as JSON text
``task``            ``name``, ``input_shape``, ``num_classes``
``rule``            the acceptance rule in words, with the current M
``M``               the ensemble size the rule decides about
``baseline``        the current baseline: ``spec`` (dict), ``spec_json``, ``E``, ``sigma2``,
                    ``rho``, ``predicted_ens_error``, ``explanation``
``best_accepted``   list of the best accepted candidates (same fields as ``baseline``)
``last_rejected``   list of the last rejected candidates (same fields; ``explanation`` says why)
``budget_left``     dict: ``iterations`` and any of ``wall_s``, ``device_s``, ``cost_usd``
``k``               how many specs to write
``iteration``       the current iteration
==================  =====================================================================

``repair.j2`` also gets ``error`` (the validation error) and ``reply`` (the rejected reply).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

__all__ = ["PromptSet", "PromptTemplateError", "prompt_context", "DEFAULT_DIR", "CONTEXT_VARS"]

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "prompts"
NAMES = ("system.j2", "propose.j2", "repair.j2")
CONTEXT_VARS = frozenset({"space_name", "space_description", "spec_schema", "task", "rule", "M",
                          "baseline", "best_accepted", "last_rejected", "budget_left", "k",
                          "iteration"})
EXTRA_VARS = {"repair.j2": frozenset({"error", "reply"})}


class PromptTemplateError(ValueError):
    """A template that cannot be used: missing, unparsable, or naming an unknown variable."""


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise PromptTemplateError(f"prompt template {path}: cannot read it ({err.strerror})") from None


class PromptSet:
    """The three templates, loaded and checked once."""

    def __init__(self, prompt: str | None = None):
        sources = {name: DEFAULT_DIR / name for name in NAMES}
        if prompt:
            path = Path(prompt)
            if path.is_dir():
                sources.update({n: path / n for n in NAMES if (path / n).is_file()})
            elif path.is_file():
                sources["propose.j2"] = path
            else:
                raise PromptTemplateError(f"--prompt {prompt}: no such file or folder")
        self.env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                                      keep_trailing_newline=True)
        self.templates: dict[str, jinja2.Template] = {}
        for name, path in sources.items():
            text = _read(path)
            try:
                ast = self.env.parse(text)
            except jinja2.TemplateSyntaxError as err:
                raise PromptTemplateError(
                    f"prompt template {path}: line {err.lineno}: {err.message}") from None
            unknown = meta.find_undeclared_variables(ast) - CONTEXT_VARS - EXTRA_VARS.get(name, frozenset())
            if unknown:
                raise PromptTemplateError(
                    f"prompt template {path} uses undefined variable(s) {', '.join(sorted(unknown))}; "
                    f"available: {', '.join(sorted(CONTEXT_VARS | EXTRA_VARS.get(name, frozenset())))}")
            self.templates[name] = self.env.from_string(text)

    def render(self, name: str, context: dict[str, Any]) -> str:
        try:
            return self.templates[name].render(**context).strip()
        except jinja2.UndefinedError as err:
            raise PromptTemplateError(f"prompt template {name}: {err.message}") from None


def _item(h) -> dict[str, Any]:
    d = asdict(h)
    d["spec_json"] = json.dumps(d["spec"], separators=(",", ":"))
    return d


def rule_in_words(rule: str, M: int) -> str:
    core = (f"each candidate is trained twice (two seeds); from the two learners' validation "
            f"residuals we get the single-learner Brier error E, the residual variance sigma2 and "
            f"the correlation rho between the learners. The predicted error of an ensemble of "
            f"M={M} learners is E - sigma2*(1-rho)*(M-1)/M. ")
    if rule == "paper":
        return core + ("A candidate replaces the baseline iff rho(new) < rho(old) - M/(M-1)*"
                       "(E(new)-E(old))/sigma2(new).")
    return core + ("A candidate replaces the baseline iff its predicted ensemble error is lower "
                   "than the baseline's: accuracy and diversity both count.")


def prompt_context(context, k: int) -> dict[str, Any]:
    """The template variables for a :class:`~agent.proposers.base.ProposalContext`."""
    return {
        "space_name": context.space.name,
        "space_description": context.space.describe(),
        "spec_schema": json.dumps(context.space.json_schema(), separators=(",", ":")),
        "task": {"name": context.task_name, "input_shape": list(context.task.input_shape),
                 "num_classes": context.task.num_classes},
        "rule": rule_in_words(context.rule, context.ensemble_size),
        "M": context.ensemble_size,
        "baseline": _item(context.baseline),
        "best_accepted": [_item(h) for h in context.best_accepted],
        "last_rejected": [_item(h) for h in context.last_rejected],
        "budget_left": dict(context.budget_left),
        "k": k,
        "iteration": context.iteration,
    }
