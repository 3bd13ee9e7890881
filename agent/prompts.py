"""Prompt templates: jinja2 files in ``prompts/`` rendered in a sandbox with ``StrictUndefined``.

``--prompt DIR`` swaps any of ``system.j2``, ``propose.j2``, ``repair.j2`` (missing ones fall back
to the defaults); ``--prompt FILE`` swaps ``propose.j2`` only. Templates are meant to be shared,
so they are untrusted: they render in :class:`jinja2.sandbox.ImmutableSandboxedEnvironment` (no
``_``-attributes, no mutation, no Python internals), and every template is checked at start-up:
parsed, scanned for ``_``-names (one clear line instead of a sandbox error mid-run), checked for
unknown variables, and rendered against a full sample context (every variable and every
attribute below, with and without optional values), so ``{{ baseline.nosuch }}`` fails before
anything trains. An empty template is accepted with a note (``PromptSet.notes``).

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
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from agent.proposers.base import HistoryItem, ProposalContext
from evaluators.userfiles import UnreadableFile, read_text

__all__ = ["PromptSet", "PromptTemplateError", "prompt_context", "sample_contexts", "DEFAULT_DIR",
           "CONTEXT_VARS"]

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "prompts"
NAMES = ("system.j2", "propose.j2", "repair.j2")
CONTEXT_VARS = frozenset({"space_name", "space_description", "spec_schema", "task", "rule", "M",
                          "baseline", "best_accepted", "last_rejected", "budget_left", "k",
                          "iteration"})
EXTRA_VARS = {"repair.j2": frozenset({"error", "reply"})}


class PromptTemplateError(ValueError):
    """A template that cannot be used: missing, unparsable, or naming an unknown variable."""


#: how much of a template error is quoted (errors name the template, so a line is enough)
_MAX_ERROR = 300


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR] + " …"


def _private_names(ast: nodes.Template) -> list[str]:
    """``_``-attributes and dunder strings a template names (``x.__class__``,
    ``x['__init__']``, ``x|attr('__globals__')``): the sandbox would refuse them mid-run (or
    they only render because the branch was not taken); we refuse them at start-up."""
    found = [n.attr for n in ast.find_all(nodes.Getattr) if n.attr.startswith("_")]
    found += [n.value for n in ast.find_all(nodes.Const)
              if isinstance(n.value, str) and n.value.startswith("__")]
    return sorted(set(found))


def _sample_item(n: int, stats: bool = True) -> dict[str, Any]:
    spec = {"example_field": "example_value", "n": n}
    item = HistoryItem(proposal_id=f"it1-p{n}", spec=spec, E=0.2 if stats else None,
                       sigma2=0.1 if stats else None, rho=0.5 if stats else None,
                       predicted_ens_error=0.15 if stats else None, accepted=stats,
                       explanation="sample explanation")
    return _item(item)


def sample_contexts(name: str) -> list[dict[str, Any]]:
    """Two contexts with every variable of :data:`CONTEXT_VARS` (and the repair extras): one
    with every optional value present (histories, all budgets), one with them absent or None,
    as the first iteration of a run without budgets sees them."""
    common = {"space_name": "nb201", "space_description": "sample description",
              "spec_schema": "{}", "task": {"name": "mnist1d", "input_shape": [1, 40],
                                            "num_classes": 10},
              "rule": "sample rule", "M": 50, "baseline": _sample_item(0), "k": 2, "iteration": 1}
    full = common | {"best_accepted": [_sample_item(1), _sample_item(2)],
                     "last_rejected": [_sample_item(3), _sample_item(4, stats=False)],
                     "budget_left": {"iterations": 3.0, "wall_s": 100.0, "device_s": 50.0,
                                     "cost_usd": 1.0}}
    sparse = common | {"best_accepted": [], "last_rejected": [],
                       "budget_left": {"iterations": 1.0}}
    if name in EXTRA_VARS:
        full |= {"error": "sample error", "reply": "sample reply"}
        sparse |= {"error": "", "reply": ""}
    return [full, sparse]


#: a template is a page or two of text (the shipped ones are under 2 kB); larger ones are refused
#: before they are read: every call would send their rendering to the model
MAX_TEMPLATE_BYTES = 100_000


def _read(path: Path) -> str:
    try:
        return read_text(path, MAX_TEMPLATE_BYTES, "template")
    except UnreadableFile as err:
        raise PromptTemplateError(f"prompt template {path}: {err}") from None


class PromptSet:
    """The three templates, loaded and checked once; ``notes`` holds one line per template that
    was accepted but looks like a mistake (an empty file)."""

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
        self.env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined,
                                                 autoescape=False, keep_trailing_newline=True)
        self.templates: dict[str, jinja2.Template] = {}
        self.notes: list[str] = []
        for name, path in sources.items():
            text = _read(path)
            if not text.strip():
                self.notes.append(f"prompt template {path} is empty: the model gets an empty "
                                  f"{name.removesuffix('.j2')} message")
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
            if private := _private_names(ast):
                raise PromptTemplateError(
                    f"prompt template {path} reaches for Python internals "
                    f"({', '.join(private)}); templates may use only the documented variables")
            self.templates[name] = self.env.from_string(text)
            for sample in sample_contexts(name):
                try:
                    self.templates[name].render(**sample)
                except Exception as err:  # any failure on a sample would recur mid-run
                    raise PromptTemplateError(
                        f"prompt template {path} fails on a sample context: "
                        f"{_error_text(err)}") from None

    def render(self, name: str, context: dict[str, Any]) -> str:
        """The rendered template; any failure (undefined name, sandbox refusal, a filter's
        error) is a :class:`PromptTemplateError` naming the template."""
        try:
            return self.templates[name].render(**context).strip()
        except Exception as err:
            raise PromptTemplateError(f"prompt template {name}: {_error_text(err)}") from None


def _error_text(err: Exception) -> str:
    if isinstance(err, SecurityError):
        return _one_line(f"refused by the sandbox: {err}")
    if isinstance(err, jinja2.TemplateError):
        return _one_line(err.message or type(err).__name__)
    return _one_line(f"{type(err).__name__}: {err}")


def _item(h: HistoryItem) -> dict[str, Any]:
    d = asdict(h)
    d["spec_json"] = json.dumps(d["spec"], separators=(",", ":"))
    return d


def rule_in_words(rule: str, M: int) -> str:
    core = (f"each candidate is trained a few times (two seeds to start, more when the decision "
            f"is close); from the learners' validation residuals we get the single-learner Brier "
            f"error E, the residual variance sigma2 and the correlation rho between the learners. "
            f"The predicted error of an ensemble of M={M} learners is "
            f"E - sigma2*(1-rho)*(M-1)/M. ")
    if rule == "paper":
        return core + ("A candidate replaces the baseline iff rho(new) < rho(old) - M/(M-1)*"
                       "(E(new)-E(old))/sigma2(new).")
    return core + ("A candidate replaces the baseline iff its predicted ensemble error is "
                   "confidently lower than the baseline's: accuracy and diversity both count, "
                   "and a near tie leaves the baseline in place.")


def prompt_context(context: ProposalContext, k: int) -> dict[str, Any]:
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
