"""``python -m agent.run``: the main job. Sets a run up (or resumes one), runs the loop, writes
``best_spec.json``, the ``run_finished`` event and the report, and prints a summary."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from agent.cli import UsageError, build_parser, check_executor, config_from_args, load_baseline
from agent.config import RunConfig, package_versions
from agent.lock import RunFolderBusy, RunFolderLock, RunFolderUnwritable
from agent.loop import SearchLoop, StopRequested
from agent.progress import LiveProgress, console_for, summary_table
from agent.redact import redact, redact_tree
from agent.resume import explicit_flags, reopen
from agent.state import SearchState
from agent.trajectory import CONFIG, EVALS, Trajectory, resume_command

if TYPE_CHECKING:
    from evaluators.data import Task
    from evaluators.evaluator import Evaluator
    from evaluators.predictor.base import CandidateFilter
    from spaces.base import SearchSpace, TaskInfo

__all__ = ["main"]


class _RedactingStream:
    """stderr as the console sees it, with every write redacted (a second line of defence:
    messages are redacted where they are made, this catches what is printed as-is)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(redact(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


console = console_for(_RedactingStream(sys.stderr))


def _fail(message: str) -> int:
    print(f"error: {redact(' '.join(message.split()))}", file=sys.stderr)  # one line, never wrapped
    return 2


def new_run_dir(config: RunConfig) -> Path:
    out = Path(config.out)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{config.space}-{config.dataset}-s{config.seed}"
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"--out {out}: {parent} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for n in range(1000):
            run_dir = out / (base if n == 0 else f"{base}-{n}")
            try:
                run_dir.mkdir()
                return run_dir
            except FileExistsError:
                continue
    except OSError as err:
        raise UsageError(f"--out {out}: cannot create a run folder there ({err.strerror})") from None
    raise UsageError(f"--out {out}: too many runs named {base}")


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"--device {name}: choose cpu, cuda or auto")
    return name


def make_filter(config: RunConfig, space: SearchSpace, task_info: TaskInfo
                ) -> tuple[CandidateFilter, str | None]:
    from evaluators.predictor.base import PassThroughFilter

    if config.predictor == "none":
        return PassThroughFilter(), None
    try:
        from evaluators.predictor import make_filter as factory
    except ImportError:
        return PassThroughFilter(), (f"predictor {config.predictor!r} is not available in this "
                                     "install: keeping the first k proposals")
    try:
        return factory(config.predictor, space, task_info, refit_every=config.predictor_refit,
                       min_labels=config.predictor_min_labels, seed=config.seed,
                       total_iterations=config.iterations, zero_cost=config.zero_cost,
                       weighting=config.predictor_weights), None
    except ValueError as err:
        raise UsageError(f"--predictor: {err}") from None


def make_evaluator(config: RunConfig, space: SearchSpace, task: Task) -> Callable[[Path], Evaluator]:
    """The evaluator ``--executor`` names, as a function of the run's npz folder. With ``ray``,
    Ray is started or joined here, before any run folder exists (a missing extra, an
    unreachable cluster or GPUs asked of a cluster without any: UsageError)."""
    from functools import partial

    from evaluators.evaluator import LocalEvaluator

    if config.executor == "local":
        return partial(LocalEvaluator, space, task, M=config.ensemble_size, cap=config.size_cap,
                       compile_model=config.compile)
    from evaluators import ray_evaluator as rx

    try:
        resources = rx.connect(config.ray_address)
    except (rx.RayUnavailable, rx.ClusterUnreachable) as err:
        raise UsageError(str(err)) from None
    gpus = config.gpus_per_learner
    if gpus is None:
        gpus = 1 / config.min_learners if task.device.type == "cuda" else 0.0
    if gpus > 0 and not resources.get("GPU"):
        raise UsageError(f"--gpus-per-learner {gpus:g}: the Ray cluster has no GPU")
    recipe = rx.TaskRecipe(config.dataset, str(task.device), config.data_dir, config.n_samples,
                           config.seed)
    return lambda npz_dir: rx.RayEvaluator(
        config.space, recipe, npz_dir, config.ensemble_size, cap=config.size_cap,
        compile_model=config.compile, gpus_per_learner=gpus,
        max_concurrent=config.max_concurrent, address=config.ray_address, task_info=task.info,
        n_train=len(task.y_train))


def prepare(argv: list[str] | None):
    """Parse flags, check every name and file, and create or reopen the run folder."""
    from spaces import get_space

    parser = build_parser()
    args, given = explicit_flags(parser, argv)
    if args.resume:
        resumed = reopen(Path(args.resume), args, given)
        config = resumed.config
    else:
        config, resumed = config_from_args(args), None
        check_executor(config)
    try:
        space = get_space(config.space)
    except ValueError as err:
        raise UsageError(f"--space: {err}") from None
    from evaluators.data import list_datasets

    if config.dataset not in list_datasets():
        raise UsageError(f"--dataset: unknown dataset {config.dataset!r}; choose one of: "
                         f"{', '.join(list_datasets())}")
    try:
        rungs = config.rungs()
    except ValueError as err:
        flag = "--fidelity-schedule" if config.fidelity_schedule else "--fidelity"
        raise UsageError(f"{flag}: {err}") from None
    if config.keep > config.proposals:
        raise UsageError(f"--keep {config.keep} must not exceed --proposals {config.proposals}")
    if resumed is None and config.baseline:
        config.baseline_spec = load_baseline(config.baseline, space).model_dump()
    if config.prompt:  # checked whatever the model, so a mistyped path never passes unnoticed
        from agent.prompts import PromptSet, PromptTemplateError

        try:
            for note in PromptSet(config.prompt).notes:
                console.print(f"[yellow]note:[/] {note}")
        except PromptTemplateError as err:
            raise UsageError(str(err)) from None
    return args, config, resumed, space, rungs


def lock_new_run(run_dir: Path) -> RunFolderLock:
    """A fresh run folder is owned by this process from the moment it exists."""
    try:
        return RunFolderLock(run_dir).acquire()
    except (RunFolderBusy, RunFolderUnwritable) as err:
        raise UsageError(f"--out: {err}") from None


def main(argv: list[str] | None = None) -> int:
    from agent.proposers import open_proposer
    from evaluators.data import DatasetUnavailable, load_task

    try:
        args, config, resumed, space, rungs = prepare(argv)
        device = resolve_device(config.device)
        try:
            task = load_task(config.dataset, device=device, data_dir=config.data_dir,
                             n_samples=config.n_samples, seed=config.seed,
                             download=config.download)
        except DatasetUnavailable as err:
            raise UsageError(f"--dataset {config.dataset}: {err}") from None
        proposer, config.model, why = open_proposer(config.model, space=space, seed=config.seed,
                                                    api_base=config.api_base, prompt=config.prompt)
        if why:
            console.print(f"[yellow]note:[/] {why}")
        if config.max_cost_usd is not None and not proposer.priced():
            proposer.close()
            raise UsageError(f"--max-cost-usd {config.max_cost_usd:g}: litellm's price map has no price for "
                             f"{config.model!r}, so its calls would count as $0 and the cap could never "
                             "stop the run; leave it out and bound the run with --iterations or "
                             "--max-wall-seconds")
        cand_filter, filter_note = make_filter(config, space, task.info)
        evaluator_at = make_evaluator(config, space, task)
        if resumed is None:
            run_dir = new_run_dir(config)
            lock = lock_new_run(run_dir)
        else:
            run_dir, lock = Path(args.resume), resumed.lock
    except UsageError as err:
        return _fail(str(err))
    except Exception as err:  # e.g. ProposerFatal or a template error at start-up
        return _fail(f"{type(err).__name__}: {err}")
    if filter_note:
        console.print(f"[yellow]note:[/] {filter_note}")

    trajectory = Trajectory(run_dir)
    if resumed is None:
        (run_dir / CONFIG).write_text(json.dumps(redact_tree(
            {"config": config.safe_dump(), "versions": package_versions(),
             "device": device, "command": ["python", "-m", "agent.run", *(argv or sys.argv[1:])]}),
            indent=2))
        state = SearchState()
        trajectory.open()
        loop_state_event = ("run_started", {"config": config.safe_dump()})
    else:
        state, read = resumed.state, resumed.read
        trajectory.open(truncate_to=read.valid_bytes)
        loop_state_event = ("resumed", {"from_event": len(read.events),
                                        "truncated_line": read.truncated_line,
                                        "settings": redact_tree(resumed.settings)})
    baseline_spec = (space.parse(config.baseline_spec) if config.baseline_spec
                     else space.reference())
    stop = StopRequested()
    previous = signal.signal(signal.SIGINT, stop.set)
    progress = LiveProgress(console, config)
    evaluator = evaluator_at(run_dir / EVALS)
    loop = SearchLoop(config, run_dir, space, task, rungs, proposer, cand_filter, trajectory,
                      state, stop, evaluator, progress)
    for cand in state.candidates.values():  # a resumed predictor relearns what it had learnt:
        if cand.screened is not None:      # first-rung results as trained, not a later rung's
            cand_filter.observe(space.parse(cand.spec), cand.screened.ens_error(config.ensemble_size))
    loop.log(loop_state_event[0], 0, **loop_state_event[1])
    from agent.finish import cut_evaluations, end_reason, finish_run, validate_baselines

    try:
        with progress:
            reason = loop.run(baseline_spec)
        reason = end_reason(loop, reason)
        if reason != "interrupted" and not reason.startswith("proposer_error"):
            validate_baselines(loop, console)
    finally:
        signal.signal(signal.SIGINT, previous)
        proposer.close()
    cut = cut_evaluations(loop, reason, progress)
    report_path = finish_run(loop, reason, console, cut)
    console.print(summary_table(state, config, reason, state.wall_s(time.time())))
    if cut is not None:
        console.print(cut.text(), soft_wrap=True)  # one unwrapped command to copy
    elif reason == "interrupted":
        console.print(f"interrupted: {resume_command(run_dir)} continues it", soft_wrap=True)
    if report_path:
        console.print(f"report: {report_path}")
    console.print(f"run folder: {run_dir}")
    lock.release()
    if reason.startswith(("proposer_error", "baseline_failed")):
        return 1
    return 130 if reason == "interrupted" else 0


if __name__ == "__main__":
    sys.exit(main())
