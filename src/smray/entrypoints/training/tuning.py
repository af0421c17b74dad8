"""Hyper-parameter tuning inside one training job, where SageMaker's TuningStep cannot run (local mode).

Trials sample the declared search space (`hyperparameters.sample_trials`) and run the same training loop
as the final model, on one core each: one actor per core of the job, spread over its hosts, reads the
channels once and runs trial after trial on them. A ladder of successive halving (ASHA's rule) ends the
clearly bad trials early: at each rung (the grace rounds, then 3x, 9x, ... that, below num_round) a trial
goes on only when its score is among the best third of the scores of the trials drawn before it that
reached that rung. The ladder decides as if the trials had run one after another in the order they were
drawn, whichever runs faster: the same data and seed give the same decisions, hence the same model. A trial
asks the ladder at its rungs only, not every round.

The ladder compares losses (lower is better): a metric where higher is better (auc) is negated for it.

A trial starts on one thread and takes more as its host's other trials end (every 10 rounds it asks how
many cores its host has per running trial): the last long trial is not left on one core of an idle host.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import xgboost

from smray import hyperparameters
from smray.contracts.resource_config import discover
from smray.entrypoints import ray_tasks
from smray.entrypoints.training.engines import Job, boost, load_matrices
from smray.reporting import numbers

log = logging.getLogger(__name__)

REDUCTION = 3  # a rung keeps the best 1/REDUCTION of the trials that reach it


@dataclass(frozen=True)
class Trial:
    config: dict[str, Any]
    score: float  # the best validation score it reached (the highest where higher is better)
    rounds: int  # rounds it ran
    ended_by: str  # "num_round", "early stopping" or "ladder"
    host: str  # where it ran (SageMaker's name of the host)


def rung_rounds(num_round: int, grace_rounds: int) -> list[int]:
    """The rounds at which a trial meets the ladder: the grace rounds, then REDUCTION times as many, ...,
    below num_round."""
    rungs, rung = [], max(grace_rounds, 1)
    while rung < num_round:
        rungs.append(rung)
        rung *= REDUCTION
    return rungs


class Ladder:
    """ASHA's rungs, decided in the order the trials were drawn (a Ray actor during tuning).

    Plain ASHA compares a trial with the scores that reached the rung before it, so which trials go on
    depends on which ran faster. Here trial i's score at a rung is compared with those of trials 0..i-1
    that reached it, and the answer waits until each of them has reached it or ended short of it. Trials
    start in the order they were drawn, each on its own runner, so an earlier trial is always running or
    done: the wait always ends."""

    def __init__(self, rungs: list[int]) -> None:
        self.scores: dict[int, dict[int, float]] = {r: {} for r in rungs}  # rung -> trial -> score
        self.ended_at: dict[int, int] = {}  # trial -> the rounds it ran
        self.changed = asyncio.Condition()

    async def goes_on(self, trial: int, rounds: int, score: float) -> bool:
        """Records a trial's score (a loss: lower is better) at a rung; False when it is worse than the best
        third of the earlier trials' scores there (the first trial to reach a rung always goes on)."""
        async with self.changed:
            self.scores[rounds][trial] = score
            self.changed.notify_all()
            await self.changed.wait_for(lambda: self._earlier_settled(trial, rounds))
        earlier = [s for t, s in self.scores[rounds].items() if t < trial]
        return not earlier or score <= float(np.nanpercentile(earlier, 100 / REDUCTION))

    async def ended(self, trial: int, rounds: int) -> None:
        async with self.changed:
            self.ended_at[trial] = rounds
            self.changed.notify_all()

    def _earlier_settled(self, trial: int, rung: int) -> bool:
        return all(t in self.scores[rung] or self.ended_at.get(t, rung) < rung for t in range(trial))


class _AskAtRungs(xgboost.callback.TrainingCallback):
    """Asks the ladder at each rung; while the answer waits for earlier trials, this trial's core is
    counted free, so the trials it waits for may take it."""

    def __init__(
        self, ladder: Any, share: Any, node: str, trial: int, rungs: list[int], metric: str, maximize: bool
    ) -> None:
        self.ladder, self.share, self.node, self.trial = ladder, share, node, trial
        self.rungs, self.metric = set(rungs), metric
        self.sign = -1.0 if maximize else 1.0  # the ladder's losses
        self.stopped = False

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        import ray

        if epoch + 1 not in self.rungs:
            return False
        loss = self.sign * float(evals_log["validation"][self.metric][-1])
        answer = self.ladder.goes_on.remote(self.trial, epoch + 1, loss)
        if not ray.wait([answer], timeout=0.05)[0]:
            ray.get(self.share.ended.remote(self.node))
            ray.wait([answer], timeout=None)
            ray.get(self.share.started.remote(self.node))
        self.stopped = not ray.get(answer)
        return self.stopped


class CoreShare:
    """How many threads a trial may use: its host's cores over the trials running there (a Ray actor)."""

    def __init__(self, cores: dict[str, int]) -> None:
        self.cores = cores  # Ray node id -> CPUs
        self.running = dict.fromkeys(cores, 0)

    def started(self, node: str) -> None:
        self.running[node] += 1

    def ended(self, node: str) -> None:
        self.running[node] -= 1

    def threads(self, node: str) -> int:
        return max(self.cores[node] // max(self.running[node], 1), 1)


class _TakeFreeCores(xgboost.callback.TrainingCallback):
    EVERY = 10  # rounds between two questions (an actor call costs about a millisecond)

    def __init__(self, share: Any, node: str) -> None:
        self.share, self.node, self.threads = share, node, 1

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        import ray

        if (epoch + 1) % self.EVERY == 0:
            threads = ray.get(self.share.threads.remote(self.node))
            if threads != self.threads:  # XGBoost applies it from the next round on
                model.set_param({"nthread": threads})
                self.threads = threads
        return False


class TrialRunner:
    """One core's trials (a Ray actor): the channels are read on first use and kept for the next trial."""

    def __init__(self, job: Job, ladder: Any, rungs: list[int], share: Any) -> None:
        import ray

        self.job, self.ladder, self.rungs, self.share = job, ladder, rungs, share
        self.node = ray.get_runtime_context().get_node_id()
        self.matrices: tuple[xgboost.DMatrix, xgboost.DMatrix] | None = None

    def run(self, trial: int, config: dict[str, Any]) -> Trial:
        """Runs the trial drawn `trial`-th."""
        import ray

        if self.matrices is None:
            self.matrices = load_matrices(self.job, nthread=1)
        job = replace(self.job, values={**self.job.values, **config})
        values, metric = job.values, job.values["eval_metric"]
        ask = _AskAtRungs(self.ladder, self.share, self.node, trial, self.rungs, metric, job.maximize)
        callbacks = [ask, _TakeFreeCores(self.share, self.node)]
        ray.get(self.share.started.remote(self.node))
        rounds = 0  # a trial that fails ends short of every rung: the later ones need not wait for it
        try:
            booster, history = boost(job, *self.matrices, 1, callbacks, None, train_metric=False)
            rounds = booster.num_boosted_rounds()
        finally:
            ray.get([self.share.ended.remote(self.node), self.ladder.ended.remote(trial, rounds)])
        scores = history["validation"][metric]
        if ask.stopped:
            ended_by = "ladder"
        elif len(scores) < values["num_round"]:
            ended_by = "early stopping"
        else:
            ended_by = "num_round"
        best = max(scores) if job.maximize else min(scores)
        return Trial(config, float(best), rounds, ended_by, discover().current_host)


def tune(job: Job) -> tuple[dict[str, Any], list[Trial]]:
    """Best hyper-parameters (the job's, overlaid with the best trial's config) and every trial, best
    first."""
    import ray
    from ray.exceptions import RayTaskError
    from ray.util import ActorPool

    values = job.values
    configs = hyperparameters.sample_trials(values["tune_trials"], values["seed"])
    rungs = rung_rounds(values["num_round"], values["tune_grace_rounds"])
    ladder = ray.remote(num_cpus=0)(Ladder).remote(rungs)
    cores = ray_tasks.host_cores()
    share = ray.remote(num_cpus=0)(CoreShare).remote(cores)
    # Ray caps a 1-CPU actor's OpenMP at 1 thread (OMP_NUM_THREADS), which XGBoost cannot exceed.
    threads_allowed = {"env_vars": {"OMP_NUM_THREADS": str(max(cores.values()))}}
    runners = [
        ray.remote(num_cpus=1)(TrialRunner)
        .options(scheduling_strategy="SPREAD", runtime_env=threads_allowed)
        .remote(job, ladder, rungs, share)
        for _ in range(min(len(configs), max(sum(cores.values()), 1)))
    ]
    trials: list[Trial] = []
    try:
        drawn = enumerate(configs)  # started in this order: a trial waits for earlier ones only
        for trial in ActorPool(runners).map_unordered(lambda r, d: r.run.remote(*d), drawn):
            trials.append(trial)
            print(
                f"tuning: trial {len(trials)} of {len(configs)} done: {trial.rounds} rounds "
                f"(ended by {trial.ended_by}), best validation-{values['eval_metric']} "
                f"{numbers.significant(trial.score, 4)}",
                flush=True,
            )
    except RayTaskError as exc:
        raise ray_tasks.original(exc) from exc
    finally:
        for runner in [*runners, ladder, share]:
            ray.kill(runner)
    trials.sort(key=lambda t: t.score, reverse=job.maximize)
    log.info("tuning: best %s = %.4g with %s", values["eval_metric"], trials[0].score, trials[0].config)
    return {**values, **trials[0].config}, trials
