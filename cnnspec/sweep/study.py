"""Running a sweep: the Optuna study, its storage, local worker processes, resume and pruning.

Storage is an Optuna RDB URL, `sqlite:///SWEEP/study.db` by default. Every worker (this
process, or `--workers N` subprocesses, or processes on other machines with the same
`--storage`) runs the same loop on the study: ask a trial, check its spec statically (a spec
that fails is PRUNED with its located error, no training), train it in SWEEP/trials/NNNN
(the trial number: unique in the study, so two workers never share a folder), report each
epoch's objective to the pruner. Trials run until `sweep.trials` of them finished (complete or
pruned). A worker that dies mid-trial leaves its trial RUNNING; three things end it FAIL:
- Optuna's heartbeat (every RDB storage here): each running trial's worker writes a heartbeat every
  HEARTBEAT_SECONDS; before any worker starts a trial, Optuna fails the RUNNING trials whose
  heartbeat is older than GRACE_SECONDS (`fail_stale_trials`), and `stale_trial_noted` records why;
- the coordinator, once all its local workers have ended: the RUNNING trials that one of its own
  worker processes had started (each trial records its worker as `host:pid`);
- the coordinator too, when the storage is the sweep folder's own SQLite file: every RUNNING trial
  left (the folder's lock means no other coordinator can be running one).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cnnspec.errors import CnnspecError, SpecError, TrainingError
from cnnspec.sweep.space import Candidate, candidate, check_paths, suggest, sweep_of
from cnnspec.training.callbacks import Callback

if TYPE_CHECKING:
    import optuna

    from cnnspec.spec.model import Spec, SweepSpec

HEARTBEAT_SECONDS = 2
GRACE_SECONDS = 8  # 4 missed heartbeats: a worker busy in a long epoch still writes them (a thread)
SPEC_ATTR = "cnnspec_spec_hash"  # the study's user attr: which spec and space it was made for
WORKER_ATTR = "worker"  # a trial's user attr: host:pid of the process that ran it
STALE_PREFIX = "stale_trial_"  # study user attrs: why a trial was failed by the heartbeat check


def worker_id(pid: int | None = None) -> str:
    return f"{socket.gethostname()}:{pid if pid is not None else os.getpid()}"


def stale_trial_noted(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna's failed_trial_callback: a FAIL trial's own attrs are final, so the reason goes on the study."""
    study.set_user_attr(
        f"{STALE_PREFIX}{trial.number}",
        f"no heartbeat from its worker ({trial.user_attrs.get(WORKER_ATTR, '?')}) for {GRACE_SECONDS} s: "
        "the worker died or lost the storage",
    )


@dataclass(frozen=True)
class SweepPlan:
    """What one `cnnspec sweep` runs: the spec file (and its text, read once when the sweep started: an
    edit of the file mid-sweep changes nothing), the sweep folder, the storage and the trial count."""

    spec_path: Path
    spec_text: str
    out: Path
    storage: str
    trials: int

    @property
    def default_storage(self) -> bool:
        return self.storage == local_storage(self.out)


def local_storage(out: Path) -> str:
    return f"sqlite:///{(out / 'study.db').resolve()}"


def refuse_memory_storage(url: str) -> None:
    """An in-memory SQLite URL (`sqlite://`, `sqlite:///`, `sqlite:///:memory:`) is refused: every
    process (worker, resume, report) opens the storage anew, so each would see an empty study."""
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return  # not a URL: _storage says so
    memory = parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
    if parsed.get_backend_name() == "sqlite" and memory:
        raise CnnspecError(
            f"--storage {_shown(url)}: an in-memory SQLite database: workers, --resume and the report cannot share it",
            hint="name a file (sqlite:///sweep.db) or leave --storage out (DIR/study.db)",
        )


@contextlib.contextmanager
def storage_errors(plan: SweepPlan) -> Iterator[None]:
    """A storage that fails mid-sweep (a full disk, a server gone) ends the sweep with one line."""
    import sqlalchemy

    try:
        yield
    except sqlalchemy.exc.SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise CnnspecError(
            f"{_shown(plan.storage)}: the study's storage failed: {first[0] if first else type(exc).__name__}",
            hint="free disk space (or bring the database server back), then continue with --resume",
        ) from None


def _storage(url: str) -> optuna.storages.RDBStorage:
    import inspect
    import warnings

    import optuna
    import sqlalchemy

    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    # Optuna 4.9 renamed failed_trial_callback (still accepted, with a FutureWarning) to this
    takes = inspect.signature(optuna.storages.RDBStorage).parameters
    callback = "heartbeat_stale_trial_callback"
    if callback not in takes:
        callback = "failed_trial_callback"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                **{callback: stale_trial_noted},  # type: ignore[arg-type]
            )
        except ImportError as exc:  # no driver for the URL's database
            raise CnnspecError(
                f"--storage {_shown(url)}: {exc}",
                hint="for PostgreSQL install psycopg2 (the sweep extra) and write postgresql+psycopg2://…",
            ) from None
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:  # not a URL, unknown database, server down
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CnnspecError(
                f"--storage {_shown(url)}: cannot open the storage: {first}",
                hint="an Optuna RDB URL: sqlite:///FILE, postgresql+psycopg2://USER[:PASSWORD]@HOST:PORT/DATABASE "
                "(the server running, the database created), mysql+pymysql://…",
            ) from None


def _shown(url: str) -> str:
    """The URL without its password, for messages."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return url


def _pruner(sweep: SweepSpec) -> optuna.pruners.BasePruner:
    import optuna

    if sweep.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if sweep.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def load_plan_spec(plan: SweepPlan) -> tuple[Spec, str]:
    """The plan's spec (from the text read at the start) with its space checked, and its hash."""
    from cnnspec.rundir.info import spec_hash
    from cnnspec.spec.load import loads

    spec = loads(plan.spec_text, str(plan.spec_path))
    sweep_of(spec)
    check_paths(spec, plan.spec_text, str(plan.spec_path))
    return spec, spec_hash(spec)


def open_study(plan: SweepPlan, *, resume: bool, worker: int = 0) -> tuple[optuna.Study, Spec]:
    """The plan's study: created (refused when one exists and not `resume`), or loaded and checked to be this spec's."""
    import optuna

    spec, digest = load_plan_spec(plan)
    sweep = sweep_of(spec)
    storage = _storage(plan.storage)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    others = [n for n in names if n != spec.name]
    if plan.default_storage and others:  # the folder's trials/, best.yaml and plots are that study's
        raise CnnspecError(
            f"{plan.out} holds the sweep of spec {others[0]!r}, not {spec.name!r}",
            hint="give another --out for this spec's sweep",
        )
    direction: Literal["maximize", "minimize"] = "maximize" if sweep.objective == "val_accuracy" else "minimize"
    started = 0
    if spec.name in names:
        started = len(storage.get_all_trials(storage.get_study_id_from_name(spec.name), deepcopy=False))
    # Each start draws its own points: a resume's first trial must not repeat trial 0's draw.
    seed = (spec.train.seed * 1_000_003 + started * 1009 + worker) % 2**32
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
    if spec.name in names:
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=_pruner(sweep))
        if not resume and worker == 0:
            raise CnnspecError(
                f"{plan.out}: a study '{spec.name}' exists in {plan.storage}",
                hint="continue it with --resume, or give another --out or --storage",
            )
        if study.user_attrs.get(SPEC_ATTR) != digest:
            raise SpecError(
                f"{plan.spec_path}: the study '{spec.name}' in {plan.storage} was made for another spec or search "
                "space; --resume continues only the same one",
                hint="give another --out or --storage for a new study",
            )
        return study, spec
    if resume:
        raise CnnspecError(
            f"{plan.out}: no study '{spec.name}' in {plan.storage} to resume", hint="start it without --resume"
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=spec.name, storage=storage, direction=direction, sampler=sampler, pruner=_pruner(sweep)
    )
    study.set_user_attr(SPEC_ATTR, digest)
    return study, spec


class PruningCallback(Callback):
    """Reports each epoch's objective to the trial; raises optuna.TrialPruned when the pruner says stop.

    Raising from a hook is the callbacks' supported way to stop a run (cnnspec/training/callbacks.py):
    the epoch's checkpoint and metrics are written before on_epoch_end, so the trial's folder is whole."""

    def __init__(self, trial: optuna.Trial, objective: str) -> None:
        self.trial, self.objective = trial, objective
        self.best: float | None = None

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        import optuna

        value = record.get(self.objective)
        if value is None:
            raise TrainingError(f"sweep.objective {self.objective} needs a validation split", hint="set data.val_split")
        better = max if self.objective == "val_accuracy" else min
        self.best = value if self.best is None else better(self.best, value)
        self.trial.report(value, record["epoch"])
        if self.trial.should_prune():
            self.trial.set_user_attr("pruned", f"pruner: {self.objective} {value:.4f} after epoch {record['epoch']}")
            raise optuna.TrialPruned()


def _finished(study: optuna.Study) -> tuple[int, int]:
    """Trials that count toward `trials` (complete or pruned), and failed ones (failures, Ctrl-C)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    return done, sum(t.state == TrialState.FAIL for t in trials)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) reached a trial after its last step: it finished, and no new trial starts."""


def _failed_elsewhere(study: optuna.Study, number: int | None) -> str | None:
    """Why the trial this worker was running is FAIL in the storage (another process failed it), or None."""
    from optuna.trial import TrialState

    if number is None:
        return None
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if trial is None or trial.state != TrialState.FAIL:
        return None
    return str(trial.user_attrs.get("failed") or study.user_attrs.get(f"{STALE_PREFIX}{number}") or "no reason given")


def run_worker(plan: SweepPlan, worker: int = 0, *, say: Any = print) -> None:
    """One worker's loop on the study (which must exist), until `plan.trials` trials finished (complete
    or pruned: failed and interrupted ones do not count), or `plan.trials` trials failed in this run.

    A Ctrl-C (SIGINT, SIGTERM) while a trial trains stops it at its next step (its trial FAIL); one that
    came after its last step lets it finish; either way no new trial starts and SweepInterrupted (a
    KeyboardInterrupt) is raised. A trial that another process failed meanwhile (a second coordinator,
    a heartbeat check) ends the worker with a CnnspecError saying so."""
    import optuna

    from cnnspec.training.api import train
    from cnnspec.training.signals import StopFlag

    # optuna's own report of a failed trial is a traceback; the loop says what happened itself
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study, spec = open_study(plan, resume=True, worker=worker)
    sweep = sweep_of(spec)
    interrupted = False
    current: int | None = None

    def objective(trial: optuna.Trial) -> float:
        nonlocal interrupted, current
        current = trial.number
        trial.set_user_attr(WORKER_ATTR, worker_id())
        values = suggest(trial, sweep)
        found: Candidate = candidate(spec, values)
        trial.set_user_attr("check_ms", found.check_ms)
        if found.spec is None:
            trial.set_user_attr("pruned", f"static check: {found.error}")
            say(f"trial {trial.number}: rejected by the static check in {found.check_ms:.1f} ms\n{found.error}")
            raise optuna.TrialPruned()
        say(f"trial {trial.number}: checked in {found.check_ms:.1f} ms, training {values}")
        cb = PruningCallback(trial, sweep.objective)
        stop = StopFlag()
        try:
            run = train(
                found.spec, plan.out / "trials" / f"{trial.number:04d}", progress=False, callbacks=[cb], stop=stop
            )
        except CnnspecError as exc:  # a failed training fails the trial, not the sweep
            trial.set_user_attr("failed", exc.format())
            say(f"trial {trial.number}: failed\n{exc.format()}")
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("failed", "interrupted (Ctrl-C)")
            say(f"trial {trial.number}: interrupted; marked failed")
            raise
        if stop.requested:  # the signal came after the last step: the trial is whole, the sweep ends
            interrupted = True
            study.stop()
            say(f"trial {trial.number}: finished; stopping on Ctrl-C (no new trial starts)")
        trial.set_user_attr("run", str(run))
        assert cb.best is not None  # train.epochs >= 1: on_epoch_end ran
        return cb.best

    _, failed_before = _finished(study)

    def enough(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        done, failed = _finished(study)
        if done >= plan.trials:
            study.stop()
        elif failed - failed_before >= plan.trials:  # a spec whose every training fails: do not loop forever
            say(f"stopping: {failed - failed_before} trials failed in this run (their reasons are in the table)")
            study.stop()

    done, _ = _finished(study)
    if done >= plan.trials:
        say(f"{done} trials already finished (complete or pruned): nothing to run; ask for more with --trials N")
        return
    try:
        study.optimize(objective, callbacks=[enough], catch=(CnnspecError,))
    except (optuna.exceptions.OptunaError, ValueError, RuntimeError) as exc:
        why = _failed_elsewhere(study, current)
        if why is None:
            raise
        raise CnnspecError(
            f"trial {current} was marked failed by another process while this worker ran it ({why.splitlines()[0]})",
            hint="another cnnspec sweep on the same storage ended it; this worker stops",
        ) from exc
    if interrupted:
        raise SweepInterrupted


def fail_orphans(plan: SweepPlan, ended: list[int]) -> list[int]:
    """Mark FAIL the RUNNING trials no worker can still be running; their numbers.

    `ended` are the pids of this coordinator's local workers, all ended now. On the sweep folder's
    own SQLite file every RUNNING trial is an orphan; on another storage (workers elsewhere may be
    running) only those that one of `ended` started, and those whose heartbeat is stale."""
    import warnings

    import optuna
    from optuna.trial import TrialState

    storage = _storage(plan.storage)
    spec, _ = load_plan_spec(plan)
    study = optuna.load_study(study_name=spec.name, storage=storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    mine = {worker_id(pid) for pid in ended}
    orphans = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if plan.default_storage or t.user_attrs.get(WORKER_ATTR) in mine
    ]
    failed = []
    for t in orphans:
        try:  # the reason before the state: a FAIL trial's attrs are final
            storage.set_trial_user_attr(t._trial_id, "failed", "its worker ended mid-trial")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # a worker's heartbeat check failed it first
            continue
        failed.append(t.number)
    return failed


@dataclass(frozen=True)
class WorkerExit:
    pid: int
    code: int  # the exit status; -N: killed by signal N


def run_workers(plan: SweepPlan, workers: int, lock_fd: int | None = None) -> tuple[list[WorkerExit], bool]:
    """`workers` local worker processes on the plan's study (created already); how each ended, and
    whether a Ctrl-C reached the coordinator meanwhile.

    `lock_fd`, the sweep folder's lock, is inherited by every worker: the OS releases the lock when the
    last of them ends, so a coordinator killed while they train leaves the folder locked until they
    finish. The workers run in their own process group: a Ctrl-C at the terminal reaches the coordinator
    alone, which passes each signal on once (the first: finish or stop the trial at its next step; a
    second: stop now)."""
    args = json.dumps(
        {
            "spec": str(plan.spec_path),
            "text": plan.spec_text,
            "out": str(plan.out),
            "storage": plan.storage,
            "trials": plan.trials,
        }
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cnnspec.sweep.worker", args, str(i)],
            pass_fds=(lock_fd,) if lock_fd is not None else (),
            start_new_session=True,
        )
        for i in range(workers)
    ]
    ends = []
    interrupted = False
    for p in procs:
        while True:
            try:
                ends.append(WorkerExit(p.pid, p.wait()))
                break
            except KeyboardInterrupt:
                interrupted = True
                for q in procs:
                    if q.poll() is None:
                        q.send_signal(signal.SIGINT)
    return ends, interrupted
