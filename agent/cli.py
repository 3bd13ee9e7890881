"""Command-line flags of ``python -m agent.run``, mapped one to one onto :class:`RunConfig`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import DEFAULT_SCHEDULE, RunConfig
from evaluators.predictor import PROXIES, WEIGHTINGS
from evaluators.promotion import HALVINGS
from evaluators.userfiles import UnreadableFile, read_text

if TYPE_CHECKING:
    from pydantic import BaseModel

    from spaces.base import SearchSpace

__all__ = ["build_parser", "config_from_args", "checked_config", "UsageError", "default_wall_seconds",
           "HelpFormatter", "load_baseline", "MAX_SPEC_FILE_BYTES"]

#: a spec file is a few hundred bytes; larger files are refused before they are read
MAX_SPEC_FILE_BYTES = 200_000


class UsageError(ValueError):
    """A bad flag or input the user must fix; printed as one line, exit code 2."""


def load_baseline(path: str, space: SearchSpace) -> BaseModel:
    """The spec in the user's ``--baseline`` file, or :class:`UsageError` with one line that
    names the file and what is wrong (unreadable, too large, not UTF-8, not a valid spec)."""
    from pydantic import ValidationError

    try:
        text = read_text(Path(path), MAX_SPEC_FILE_BYTES, "spec file")
    except UnreadableFile as err:
        raise UsageError(f"--baseline {path}: {err}") from None
    try:
        return space.parse(text)
    except ValidationError as err:
        raise UsageError(f"--baseline {path}: not a valid {space.name} spec: "
                         f"{space.validation_error_text(err)}") from None


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each flag's default where it says something: not after a help text that
    already names its default, and not for an unset (None) or off (False) one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False) or "(default" in text:
            return text
        return super()._get_help_string(action) or text


def build_parser() -> argparse.ArgumentParser:
    d = RunConfig()
    p = argparse.ArgumentParser(
        prog="python -m agent.run",
        description="LLM-agent architecture search with the dual-learner monotonic acceptance "
                    "rule. Each iteration: propose K specs, let the predictor keep k, train two "
                    "learners of each, keep a candidate iff its predicted M-ensemble beats the "
                    "baseline's. Everything is logged under --out/<run_id>/.",
        formatter_class=HelpFormatter)
    a = p.add_argument
    a("--model", default=None, help="proposer: 'local' (Gemma 3 270M via llama.cpp, offline; "
      "the default when installed, else 'builtin'), 'builtin' (offline evolution), "
      "'replay:RUN_DIR', or any litellm model (gpt-4o, anthropic/..., ollama/..., "
      "openai/<name> with --api-base)")
    a("--api-base", default=None, help="OpenAI-compatible server URL")
    a("--prompt", default=None, help="folder with system.j2/propose.j2/repair.j2, or one "
      "propose template file")
    a("--space", default=d.space, help="search space: nb201 | hierarchical | ctr")
    a("--dataset", default=d.dataset, help="mnist1d | fashion-mnist | cifar10 | cifar100 | digits | "
      "synthetic-ctr | criteo (the last two for --space ctr)")
    a("--data-dir", default=None, help="dataset folder (fashion-mnist, cifar) or Criteo-format "
      "file/folder with train.txt (criteo)")
    a("--download", action="store_true", help="let torchvision download CIFAR into --data-dir")
    a("--n-samples", type=int, default=None, help="cap on training+validation samples")
    a("--device", default=d.device, help="cpu | cuda | auto (cuda when available)")
    a("--fidelity", default=None, help="low | medium | high: one rung, every decision there "
      "(default: low; on the embedded default task the schedule " + DEFAULT_SCHEDULE + ")")
    a("--fidelity-schedule", default=None, metavar="RUNGS", help="progressive fidelity, lowest "
      "rung first, e.g. low,medium,high or low:3,medium:12,high:40 (custom epochs): candidates "
      "enter the first rung, are compared with the baseline at each rung, and only a decision "
      "at the top rung (or the highest the budget allowed) moves the baseline")
    a("--batch-size", type=int, default=None, help="minibatch size at every rung (default: "
      "128; the last partial batch is dropped, so a small training set takes few optimizer "
      "steps per epoch at 128, and a cheap rung's ranking needs steps: README, 'Does a cheap "
      "rung rank?')")
    a("--eta", type=int, default=d.eta, help="successive halving: the top 1/eta of a rung's "
      "candidates are promoted")
    a("--halving", default=d.halving, choices=HALVINGS, help="asynchronous: "
      "every candidate in a rung's current top 1/eta goes up (ASHA; more than 1/eta over a run "
      "whose newcomers keep entering the top); capped: only while under 1/eta of the rung's "
      "candidates have gone up")
    a("--max-learner-epochs", type=float, default=None, help="budget in full-width learner-"
      "epochs; under 20 %% left, no new first-rung work starts (conservative rule)")
    a("--ensemble-size", type=int, default=d.ensemble_size, help="M, the ensemble the rule decides about")
    a("--rule", default=d.rule, choices=["exact", "paper"], help="acceptance rule form")
    a("--margin", type=float, default=d.margin, help="z: accept only if the predicted gain "
      "exceeds z standard errors (0 = no margin)")
    a("--learners", default=f"{d.min_learners}:{d.max_learners}", metavar="MIN:MAX",
      help="learners per candidate: MIN to start, more (up to MAX, the baseline too with the "
      "same seeds) only while the decision is not confident; still not confident at MAX = "
      "undecided, the baseline stays")
    a("--confidence", type=float, default=d.confidence, help="a decision is confident when "
      "|predicted gain| exceeds the two-sided bound at this level (a group-sequential bound over "
      "the looks: the chance that any look is wrongly confident stays 1 - level); 0 = "
      "decide on the point estimate with MIN learners")
    a("--reject-confidence", type=float, default=d.reject_confidence,
      help="the level of the bound for a rejection alone (default: --confidence): lower stops "
      "losing candidates with fewer learners; acceptances keep --confidence")
    a("--futility", type=float, default=d.futility, help="stop adding learners (undecided) when "
      "the chance of a confident call at MAX, were the gain what it seems now, is under this "
      "(0 = never): saves the learners a near tie would take without deciding it")
    a("--predictor", default=d.predictor,
      help="gnn-ensemble (GIN from scratch) | dcl-ensemble (GIN from the contrastive encoder, "
           "pretrained once per space and cached) | none")
    a("--zero-cost", default=d.zero_cost, choices=PROXIES,
      help="add a zero-cost proxy to the predictor's features: synflow (no data, no training; "
           "one forward and backward pass per proposal) | none")
    a("--predictor-weights", default=d.predictor_weights, choices=WEIGHTINGS,
      help="how the predictor's ensemble combines its members: equal | cv (weights that rank "
           "5-fold held-out records best; 5 more fits per refit, from 20 labels)")
    a("--predictor-refit", type=int, default=d.predictor_refit, help="refit after n new labels")
    a("--predictor-min-labels", type=int, default=d.predictor_min_labels,
      help="pass proposals through until this many labels exist")
    a("--iterations", type=int, default=d.iterations, help="N iterations")
    a("--proposals", type=int, default=d.proposals, help="K proposals per iteration")
    a("--keep", type=int, default=d.keep, help="k proposals trained per iteration")
    a("--max-device-seconds", type=float, default=None, help="stop after this much training time")
    a("--max-wall-seconds", type=float, default=None,
      help=f"stop starting new work after this much wall time; default: {d.max_wall_seconds:g} "
      "for the embedded default task (nb201 on mnist1d at low fidelity, keeping `make run` under "
      "3 minutes), none for any other task; with a fidelity schedule, under 20 %% left the best "
      "waiting candidates go up a rung, one at a time (conservative rule)")
    a("--max-cost-usd", type=float, default=None, help="stop before an LLM call would exceed this")
    a("--eval-time-limit", type=float, default=d.eval_time_limit,
      help="seconds per evaluation before it fails as a timeout (an evaluation never runs past "
      "--max-wall-seconds either)")
    a("--compile", action="store_true", help="torch.compile the training step (pays on a GPU "
      "for long trainings; compiling takes its own time, counted in each evaluation)")
    a("--executor", default=d.executor, choices=["local", "ray"], help="where learners train: "
      "this process, or Ray tasks (an iteration's candidates and learners at once; needs the "
      "[ray] extra)")
    a("--ray-address", default=None, metavar="ADDR", help="with --executor ray: empty starts a "
      "local Ray on this machine; 'auto' or host:port joins a running cluster (ray start --head)")
    a("--gpus-per-learner", type=float, default=None, metavar="G", help="with --executor ray: "
      "GPUs one learner asks for (fractions share a GPU; a task asks min(1, G x its learners)); "
      "default 1/MIN learners on CUDA, 0 on CPU")
    a("--max-concurrent", type=int, default=None, metavar="N", help="with --executor ray: Ray "
      "tasks in flight at most (default: as many as the cluster's resources allow)")
    a("--pipeline", action="store_true", help="ask the proposer for the next iteration while "
      "this one's candidates train (any --executor); its prompt then reflects only decided "
      "history: the baseline and verdicts as they stood when this iteration's proposals were "
      "logged")
    a("--max-params", type=int, default=d.max_params, help="refuse specs with more parameters")
    a("--max-flops", type=int, default=d.max_flops, help="refuse specs with more FLOPs per sample")
    a("--baseline", default=None, help="JSON file with the first baseline spec")
    a("--validate", action="store_true", help="train the real M-ensemble of the first and final "
      "baseline and log true vs predicted")
    a("--seed", type=int, default=d.seed, help="seed (same seed + builtin on CPU = same trajectory)")
    a("--out", default=d.out, help="folder for run folders")
    a("--resume", default=None, metavar="RUN_DIR", help="continue a run from its log; its "
      "config.json is used and other flags are ignored (except --max-* budgets and "
      "--iterations, which may be raised)")
    return p


def checked_config(fields: dict) -> RunConfig:
    """A validated :class:`RunConfig`; the first bad setting becomes a one-line UsageError that
    names the flag and quotes the value it was given."""
    from pydantic import ValidationError

    from spaces.base import first_error_line

    try:
        return RunConfig(**fields)
    except ValidationError as err:
        raise UsageError(first_error_line(
            err, lambda loc: f"--{str(loc[0]).replace('_', '-')}")) from None


def parse_learners(text: str) -> tuple[int, int]:
    """``MIN:MAX`` (or one number for both) → (MIN, MAX); one clear line quoting bad input."""
    parts = str(text).split(":")
    try:
        lo, hi = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, 0)
    except ValueError:
        lo = hi = 0
    if not 2 <= lo <= hi <= 64:
        raise UsageError(f"--learners {text!r}: expected MIN:MAX with 2 <= MIN <= MAX <= 64, "
                         "e.g. 2:6")
    return lo, hi


def default_wall_seconds(space: str, dataset: str, fidelity: str) -> float | None:
    """The wall budget when ``--max-wall-seconds`` is not given: RunConfig's default (135 s)
    for the embedded default task only, whose 3-minute promise it keeps; on any other task it
    would cut the first evaluations of a real dataset, so there is none."""
    d = RunConfig()
    default_task = (space, dataset, fidelity) == (d.space, d.dataset, d.fidelity)
    return d.max_wall_seconds if default_task else None


#: settings that mean something only with --executor ray
RAY_ONLY = ("ray_address", "gpus_per_learner", "max_concurrent")


def check_executor(config: RunConfig) -> None:
    """One line for a Ray setting on a run that trains locally, which would silently ignore it."""
    if config.executor == "ray":
        return
    for name in RAY_ONLY:
        if (value := getattr(config, name)) is not None:
            raise UsageError(f"--{name.replace('_', '-')} {value!r}: needs --executor ray (this "
                             "run trains locally)")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    fields = {k: v for k, v in vars(args).items() if k not in ("resume", "validate", "learners")}
    fields["validate_ensemble"] = args.validate
    default_task = (args.fidelity is None and args.fidelity_schedule is None
                    and (args.space, args.dataset) == (RunConfig().space, RunConfig().dataset))
    if args.fidelity is None:
        fields["fidelity"] = RunConfig().fidelity
        if default_task:
            fields["fidelity_schedule"] = DEFAULT_SCHEDULE  # the embedded default run
    elif args.fidelity_schedule is not None:
        raise UsageError("--fidelity and --fidelity-schedule: give one (a single rung is "
                         "--fidelity-schedule NAME)")
    if fields.get("max_wall_seconds") is None:
        fields["max_wall_seconds"] = (default_wall_seconds(args.space, args.dataset,
                                                           fields["fidelity"])
                                      if args.fidelity_schedule is None else None)
    fields["min_learners"], fields["max_learners"] = parse_learners(args.learners)
    return checked_config(fields)
