"""Online fine-tuning after offline pretraining (`aql finetune`): play, keep the offline data, learn from both.

The loop works in rounds: the current learner plays (exploring) for a round, its transitions join an online
buffer, and it makes `updates_per_step` updates per new transition on batches that mix offline and online
rows in a fixed proportion (`offline_ratio`; 0.5 is RLPD's symmetric sampling). Meanwhile the learner's
offline constraint can be relaxed on a linear schedule over `anneal_steps` environment steps, from its offline
value to `relax` times looser (the knob is the learner's `constraint`), so the agent may move away from the
logged behaviour as its own experience grows. Behaviour models and their constraints learn from the offline
rows only (`constrain_on`): measured on the agent's own play, a constraint holds it near itself. Where the
rounds are played is the game kind's business (`adapters/games.py`):

* a gymnasium env (continuous learners: MuJoCo; discrete learners: e.g. CartPole), one env kept across
  rounds, `round_steps` steps per round, Gaussian exploration noise on continuous actions;
* a multi-agent game (moba-1v1, connect-four, any PettingZoo game with masks) against `opponent`,
  `round_games` games per round, each round recorded into a replay log;
* the same through the bridge (`through_bridge`): the learner is served over ZeroMQ (`AgentServer`, as
  `aql deploy --record` does) to an `aql engine` process that plays the game; the recorded games are the
  round's data. This is the path of a team whose game runs in its own engine.

Evaluation (deterministic policy, fixed seeds, as `aql train`) runs before the first round, so eval.csv's
first row is the offline checkpoint measured the same way as every later one.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys
import time
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from aql_agent import __version__
from aql_agent.checkpoint import Policy, Preprocessing, load_learner, resolve_checkpoint
from aql_agent.data.formats import load_dataset
from aql_agent.errors import MAX_SEED, AqlError, require_device, require_number
from aql_agent.learners import Batch, Learner, LearnerConfig, make_learner
from aql_agent.runs import RunFolder, read_settings
from aql_agent.data.validation import check_dataset, check_discrete_dataset, check_finite
from aql_agent.training import TensorSampler, evaluate_learner, evaluation_row

@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    """Everything `aql finetune` takes; saved as `finetune.json` in the run folder."""

    checkpoint: str
    """Offline checkpoint or run folder (`aql train`)."""
    env: str
    """gymnasium id or a game (moba-1v1, connect-four, pettingzoo:MODULE; played against `opponent`)."""
    out: str
    """Run folder: finetune.json, metrics.csv, rounds.csv, eval.csv, tensorboard/, checkpoints/, online/."""
    steps: int = 10_000
    """Online environment steps (the learning agent's decisions) in total."""
    data: str | None = None
    """Offline data mixed into every batch; default: the data the checkpoint was trained on (its train.json)."""
    agent: str | None = None
    """Whose transitions to take from multi-agent offline data (default: all)."""
    recipe: str = "conservative"
    """The named preset (RECIPES; docs/tutorials/finetune.md) that gives every field below left unset its
    value; a flag given explicitly wins over the recipe."""
    learner: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Learner config changes for fine-tuning (`--set KEY=VALUE`, e.g. exploration=boltzmann); fields that shape
    networks cannot change."""
    offline_ratio: float | None = None
    """Fraction of every batch drawn from the offline data (the rest from online play). Default: the recipe's."""
    constrain_on: Literal["offline", "all"] | None = None
    """Rows the behaviour model and the constraint learn from: `offline` (the logged data's) or `all` (online
    play too: the agent's own actions then count as behaviour, which loosens the constraint by itself). Default:
    the recipe's."""
    updates_per_step: float | None = None
    """Gradient updates per online transition (the update-to-data ratio). Default: the recipe's."""
    online_warmup: int | None = None
    """Env steps played with the offline policy before the first update (WSRL's warm-up: the first updates then
    see a buffer of the policy's own play, not a few hundred transitions drawn a hundred times each); their
    updates are not made up later. Default: the recipe's."""
    ramp_steps: int | None = None
    """Env steps over which the online share of every batch grows linearly from 0 to 1 - offline_ratio (0: the
    full share at once, RLPD's fixed split). Default: the recipe's."""
    round_steps: int = 1000
    """gymnasium envs: steps played between rounds of updates."""
    round_games: int = 2
    """Multi-agent games: games played between rounds of updates (sides alternate round by round)."""
    relax: float | None = None
    """The offline constraint ends this many times looser (1: kept as trained; relaxing made AQL collapse on
    hopper-medium in docs/results.md's runs). Default: the recipe's."""
    constraint_final: float | None = None
    """The constraint's final value, instead of `relax`."""
    anneal_steps: int | None = None
    """Environment steps over which the constraint moves linearly to its final value (default: steps / 2)."""
    exploration: float | None = None
    """Continuous: Gaussian noise std in units of half the action range (default 0.1). Discrete: epsilon of
    epsilon-greedy, or the temperature of Boltzmann exploration (default: the learner's)."""
    exploration_final: float | None = None
    """Discrete: the epsilon (or temperature) reached linearly over --anneal-steps (default: no decay)."""
    protect_actions: bool = True
    """Discrete: exploration never draws the game's protected actions at random (its kind's list; moba-1v1:
    heal and recall). The greedy choice may still be one."""
    opponent: str | None = None
    """Multi-agent games: who the agent plays against, online and in evaluations (default: the game's own,
    moba-1v1's bt:medium). `self`: self-play, the online games against the run's latest checkpoint (the offline
    one until the first evaluation), the evaluations against the offline checkpoint."""
    eval_opponent: str | None = None
    """Multi-agent games: who the evaluations play (default: --opponent; with --opponent self, the offline
    checkpoint). Self-play's progress against a fixed opponent, e.g. --opponent self --eval-opponent bt:hard."""
    through_bridge: bool = False
    """Play the online games through the ZeroMQ bridge and an `aql engine` process of the game (one per worker
    with --workers, all served by this process at once)."""
    envs: int | None = None
    """gymnasium envs: play each round in this many envs, each kept across rounds (seeds seed + 7919 k), the
    round's steps split evenly between them (default: 1, or --workers). With --through-bridge: this many
    `aql engine` processes play each round's games at once against the one agent server (the same games as
    one engine records)."""
    workers: int | None = None
    """Play each round on this many Ray workers (the ray extra): a multi-agent game's games (with
    --through-bridge: its engine processes), or a gymnasium env's --envs envs; the same play as one process
    with the same --envs."""
    address: str | None = None
    """The Ray cluster to run --workers on (auto: the one `ray start` runs here; default: a local one)."""
    eval_every: int = 5000
    """Environment steps between evaluations (and checkpoints)."""
    eval_episodes: int = 10
    """Episodes (games) per evaluation."""
    log_every: int = 100
    """Updates averaged into one row of metrics.csv."""
    seed: int = 0
    """Seeds the online play, the batch sampling and the evaluation episodes."""
    device: str = "cpu"
    """torch device."""
    progress: bool = True
    """Show a tqdm progress bar."""
    tensorboard: bool = True
    """Also write metrics as TensorBoard events."""
    resume: bool = False
    """Continue the run in `out` from its latest checkpoint, exactly as if it had not stopped (its online buffer and
    random streams; an env's episode cut by the checkpoint is replayed to where it was)."""

    def __post_init__(self) -> None:
        for flag in ("steps", "round_steps", "round_games", "eval_every", "eval_episodes", "log_every"):
            require_number(f"--{flag.replace('_', '-')}", getattr(self, flag), 1, whole=True)
        if self.recipe not in RECIPES:
            raise AqlError(f"unknown --recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        if self.offline_ratio is not None:
            require_number("--offline-ratio", self.offline_ratio, 0, 1)
        if self.updates_per_step is not None:
            require_number("--updates-per-step", self.updates_per_step, 0, above_low=True)
        if self.relax is not None:
            require_number("--relax", self.relax, 0, above_low=True)
        if self.exploration_final is not None:
            require_number("--exploration-final", self.exploration_final, 0)
        for flag in ("online_warmup", "ramp_steps"):
            if getattr(self, flag) is not None:
                require_number(f"--{flag.replace('_', '-')}", getattr(self, flag), 0, whole=True)
        if self.constraint_final is not None:  # a threshold or a weight: never below zero
            require_number("--constraint-final", self.constraint_final, 0)
        if self.anneal_steps is not None:
            require_number("--anneal-steps", self.anneal_steps, 1, whole=True)
        if self.exploration is not None:
            require_number("--exploration", self.exploration, 0)
        if self.constrain_on not in (None, "offline", "all"):
            raise AqlError(f"--constrain-on must be offline or all, got {self.constrain_on!r}")
        require_number("--seed", self.seed, 0, MAX_SEED, whole=True)
        require_device(self.device)
        if self.envs is not None:
            require_number("--envs", self.envs, 1, 1024, whole=True)
        from aql_agent.distributed import check_ray_flags

        check_ray_flags(self.workers, self.address)
        for key in self.learner:
            if key.endswith("hidden") or key in ARCHITECTURE_FIELDS:
                raise AqlError(f"--set {key}: it shapes the networks, which fine-tuning keeps from the checkpoint; "
                               "train a new offline checkpoint with it (aql train --set)")

    def resolved(self) -> FinetuneSettings:
        """These settings with every unset field given its recipe's value (what finetune.json records)."""
        recipe = RECIPES[self.recipe]
        return dataclasses.replace(self, **{key: value for key, value in recipe.settings.items()
                                            if getattr(self, key) is None})


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A named fine-tuning preset: values for the FinetuneSettings fields a user leaves unset, and why."""

    summary: str
    settings: Mapping[str, Any]
    learner: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    """Learner config changes by learner name (`aql`: AQL's fields), made before the user's `--set`, which wins."""
    only: tuple[str, ...] = ()
    """The learners it is made for (empty: any); others are refused rather than given half a recipe."""


#: Fields of a learner config that build networks: fixed by the offline checkpoint.
ARCHITECTURE_FIELDS = ("critics", "critic_layer_norm")

# Each recipe builds on an earlier one: warmstart adds the warm-up to conservative, loosen and keep-behaviour relax it.
_CONSERVATIVE = {"offline_ratio": 0.5, "updates_per_step": 1.0, "constrain_on": "offline", "relax": 1.0,
                 "online_warmup": 0, "ramp_steps": 0}
_WARMSTART = {**_CONSERVATIVE, "online_warmup": 5000}
_KEEPS_BEHAVIOUR = ("bcq-discrete", "aql-discrete")

RECIPES: dict[str, Recipe] = {
    "conservative": Recipe(
        "keep the offline learner's constraint as trained, measured on the logged rows; RLPD's symmetric 50/50 "
        "batches at one update per step; the learner's own exploration (docs/results.md#fine-tuning: relaxing "
        "the constraint or measuring it on the agent's own play collapsed AQL on hopper-medium)",
        _CONSERVATIVE),
    "warmstart": Recipe(
        "conservative, but the first 5000 env steps are played by the offline policy before any update (WSRL's "
        "warm-up): the first updates see thousands of the policy's own transitions instead of drawing the first "
        "round's few hundred a hundred times each, the dip after the first round in docs/results.md",
        _WARMSTART),
    "loosen": Recipe(
        "warmstart, then the offline constraint loosens 4x over the first half of the run; AQL's generator also "
        "improves on the agent's own states (improve_on=all) and its residual's pull to the data moves under the "
        "multiplier (residual_fit_under_alpha), so the looser threshold is what holds it (docs/results.md"
        "#fine-tuning: on halfcheetah-medium the constraint kept as trained leaves G where offline training put it)",
        {**_WARMSTART, "relax": 4.0},
        learner={"aql": {"improve_on": "all", "residual_fit_under_alpha": True}}),
    "keep-behaviour": Recipe(
        "discrete BCQ and AQL: warmstart with the imitation network G frozen (imitation_learning_rate=0) and the "
        "threshold loosening 3x over the first half of the run: the allowed actions are the offline G's, widened, "
        "never narrowed (docs/results.md#fine-tuning: on moba-1v1 a G that keeps learning sharpens on the data and "
        "shuts out a rare decisive action, and the agents lose every game)",
        {**_WARMSTART, "relax": 3.0},
        learner={name: {"imitation_learning_rate": 0.0} for name in _KEEPS_BEHAVIOUR}, only=_KEEPS_BEHAVIOUR),
}


# -- data -------------------------------------------------------------------------------------------------


class MixedSampler:
    """Batches with exactly round(batch * offline_ratio) offline rows and the rest online rows (all offline
    until the first online data arrives). `drawn` counts the rows taken from each; with `mark_offline` each
    batch says which rows are offline (`Batch.offline`), so behaviour models learn from those only."""

    def __init__(self, offline: TensorSampler, offline_ratio: float, seed: int, mark_offline: bool = True):
        self.offline, self.offline_ratio, self.mark_offline = offline, offline_ratio, mark_offline
        self._storage = offline.table.new_empty((0, offline.table.shape[1]))
        self._rows = 0
        self.generator = torch.Generator(device=offline.table.device).manual_seed(seed + 1)
        self.drawn = {"offline": 0, "online": 0}

    @property
    def online(self) -> torch.Tensor:
        """The online rows so far, in play order (a view of the storage, which grows by doubling so that a
        long run copies each row a few times rather than once per round)."""
        return self._storage[:self._rows]

    def add(self, rows: np.ndarray) -> None:
        if rows.shape[1] != self._storage.shape[1]:
            raise AqlError(f"online transitions have {rows.shape[1]} columns, the offline data "
                           f"{self._storage.shape[1]}: the env's observations or action masks do not match the "
                           "offline data's")
        end = self._rows + len(rows)
        if end > len(self._storage):
            grown = self._storage.new_empty((max(end, 2 * len(self._storage)), self._storage.shape[1]))
            grown[:self._rows] = self.online
            self._storage = grown
        self._storage[self._rows:end] = torch.as_tensor(rows, device=self._storage.device)
        self._rows = end

    def sample(self, batch_size: int) -> Batch:
        offline_rows = batch_size if len(self.online) == 0 else round(batch_size * self.offline_ratio)
        parts = []
        if offline_rows:
            parts.append(self.offline.table.index_select(0, torch.randint(
                len(self.offline.table), (offline_rows,), generator=self.offline.generator, device=self.online.device)))
        if batch_size - offline_rows:
            parts.append(self.online.index_select(0, torch.randint(
                len(self.online), (batch_size - offline_rows,), generator=self.generator, device=self.online.device)))
        self.drawn["offline"] += offline_rows
        self.drawn["online"] += batch_size - offline_rows
        batch = self.offline.batch(torch.cat(parts) if len(parts) > 1 else parts[0])
        if not self.mark_offline:
            return batch
        return batch._replace(offline=torch.arange(batch_size, device=self.online.device) < offline_rows)


def anneal_steps(settings: FinetuneSettings) -> int:
    """Env steps over which the constraint and the exploration move to their final values (default steps / 2)."""
    return max(1, settings.anneal_steps if settings.anneal_steps is not None else settings.steps // 2)


@dataclasses.dataclass
class FieldSchedule:
    """One learner config field moved linearly from `start` to `final` over `steps` env steps of fine-tuning (no
    field: nothing moves). Two are made: the offline constraint (`constraint`) and the exploration (`exploration`)."""

    field: str | None
    start: float = 0.0
    final: float = 0.0
    steps: int = 1

    @classmethod
    def constraint(cls, learner: Learner, settings: FinetuneSettings) -> FieldSchedule:
        """The learner's offline constraint, from its checkpoint's value to `--constraint-final` (default: the
        value loosened by `--relax`)."""
        constraint = learner.constraint_field()
        if constraint is None:
            return cls(None)
        field, looser = constraint
        start = float(getattr(learner.config, field))
        final = settings.constraint_final
        if final is None:
            final = start * settings.relax if looser > 0 else start / settings.relax
        return cls(field, start, float(final), anneal_steps(settings))

    @classmethod
    def exploration(cls, learner: Learner, settings: FinetuneSettings) -> FieldSchedule:
        """A discrete learner's epsilon or Boltzmann temperature, from its value at the start of fine-tuning to
        `--exploration-final`."""
        if not learner.discrete or settings.exploration_final is None:
            return cls(None)
        field = exploration_field(learner)
        return cls(field, float(getattr(learner.config, field)), settings.exploration_final, anneal_steps(settings))

    def value(self, env_step: int) -> float:
        return self.start + (self.final - self.start) * min(1.0, env_step / self.steps)

    def apply(self, learner: Learner, env_step: int) -> float | None:
        """Set the field for this point of fine-tuning; returns its value (None: no field)."""
        if self.field is None:
            return None
        value = self.value(env_step)
        learner.config = dataclasses.replace(learner.config, **{self.field: value})
        return value


def exploration_field(learner: Learner) -> str:
    """The config field `--exploration` sets on a discrete learner: its epsilon or its temperature."""
    return "exploration_temperature" if learner.config.exploration == "boltzmann" else "exploration_epsilon"


def rebuilt_with(learner: Learner, config: LearnerConfig, device: str) -> Learner:
    """The learner built anew with `config` and its state loaded: a change to a field read when the learner is
    built (the optimisers' step sizes) takes effect, not only the fields read at every update."""
    if config == learner.config:
        return learner
    rebuilt = make_learner(learner.algo, learner.obs_dim, learner.act_dim, config.to_dict(), device)
    rebuilt.load_state_dict(learner.state_dict())
    return rebuilt


def learner_changes(learner: Learner, settings: FinetuneSettings, protected: tuple[int, ...]) -> dict[str, Any]:
    """The learner config changes fine-tuning makes, in order: the recipe's for this learner, --set (which wins
    over the recipe), the game's protected actions (discrete, unless --no-protect-actions or set by hand), and
    --exploration. Returns them (`applied`) and the new config (`config`)."""
    recipe = RECIPES[settings.recipe]
    if recipe.only and learner.name not in recipe.only:
        raise AqlError(f"--recipe {settings.recipe} is made for {', '.join(recipe.only)}, not {learner.name}: "
                       f"choose another recipe ({', '.join(n for n, r in RECIPES.items() if not r.only)})")
    asked = {**recipe.learner.get(learner.name, {}), **settings.learner}
    names = {f.name for f in dataclasses.fields(learner.config)}
    unknown = sorted(set(asked) - names)
    if unknown:
        raise AqlError(f"--set: {learner.config_class.__name__} has no field(s) {unknown}; valid fields: "
                       f"{sorted(names)}")
    applied = dict(asked)
    if settings.exploration_final is not None and not learner.discrete:
        raise AqlError("--exploration-final decays a discrete learner's epsilon or temperature; a continuous "
                       "learner's Gaussian noise (--exploration) stays fixed")
    if learner.discrete and settings.protect_actions and "exploration_exclude" not in asked and protected:
        applied["exploration_exclude"] = list(protected)
    if learner.discrete and settings.exploration is not None:
        style = applied.get("exploration", learner.config.exploration)
        applied["exploration_temperature" if style == "boltzmann" else "exploration_epsilon"] = settings.exploration
    try:
        config = learner.config_class.from_dict({**learner.config.to_dict(), **applied})
    except AqlError as error:
        raise AqlError(f"--set: {error}") from None
    if learner.discrete:
        try:
            learner.check_actions(config)
        except AqlError as error:
            raise AqlError(f"--set: {error}") from None
    return {"applied": applied, "config": config}


# -- the loop ---------------------------------------------------------------------------------------------


def _offline_data(settings: FinetuneSettings, checkpoint_dir: str) -> str:
    if settings.data:
        return settings.data
    run = os.path.dirname(os.path.dirname(os.path.abspath(checkpoint_dir)))
    if not os.path.exists(os.path.join(run, "train.json")):
        raise AqlError(f"no --data given and no train.json beside {checkpoint_dir} to find the offline data: pass "
                       "--data with the dataset the checkpoint was trained on")
    try:
        return read_settings(run)["settings"]["data"]
    except (KeyError, TypeError):  # a hand-edited record: no settings object, or no data in it
        raise AqlError(f"{run}/train.json names no offline data: pass --data with the dataset the checkpoint was "
                       "trained on") from None


def _on_ray(collector: Any, kind: Any, settings: FinetuneSettings) -> Any:
    """`collector` with its play moved onto Ray workers: a multi-agent game's games, a gymnasium env's envs."""
    from aql_agent.adapters.games import BridgeRounds, RecordedRounds
    from aql_agent.adapters.gym import StepCollectors

    if isinstance(collector, BridgeRounds):
        from aql_agent.distributed import EnginesOnRay

        collector.engines = settings.envs or settings.workers
        collector.launch = EnginesOnRay(settings.workers, settings.address)
        return collector
    if isinstance(collector, RecordedRounds):
        from aql_agent.distributed import RoundsOnRay

        collector.record_games = RoundsOnRay(kind.name, settings.workers, settings.address)
        return collector
    if isinstance(collector, StepCollectors):
        from aql_agent.distributed import StepsOnRay

        return StepsOnRay(collector, settings.workers, settings.address)
    raise AqlError(f"{kind.name} plays its fine-tuning rounds its own way (its kind's collector): run without "
                   "--workers")


def restore_play(collector: Any, trainer_state: Mapping[str, Any], out: str) -> bool:
    """Give `collector` the online play's state a checkpoint saved (`StepCollector.state`); whether its episode
    replayed exactly. A hand-edited or damaged state is one clear error."""
    try:
        return collector.restore(json.loads(trainer_state["collector"]))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise AqlError(f"cannot resume {out}: its checkpoint's online-play state is unreadable ({type(exc).__name__}: "
                       f"{' '.join(str(exc).split())[:200]}); start a new --out") from None


RESUMABLE_CHANGES = ("steps", "progress", "tensorboard", "resume", "device", "workers", "address")
"""FinetuneSettings fields a resumed run may be given anew: how far and where it runs, not what it does."""
COMPARED_AS_NAMED = ("out", "checkpoint", "data")
"""Paths a resumed run may spell another way: compared as what they name (the run folder itself, the offline
checkpoint's folder, the offline transitions)."""


def resumed_settings(settings: FinetuneSettings, offline_dir: str, offline_transitions: int) -> FinetuneSettings:
    """The settings a resumed run goes on with: refused where they differ from those it started with (the run
    would change course silently while its finetune.json said otherwise; the learner comes from the run's
    checkpoint, so a new --set or recipe would not even take effect). An unset --anneal-steps is the run's own,
    not half the new --steps."""
    record = read_settings(settings.out, "finetune.json")
    started = record.get("settings")
    if not isinstance(started, dict):
        raise AqlError(f"{os.path.join(settings.out, 'finetune.json')} holds no settings: restore it or start a "
                       "new run")
    own = started.get("anneal_steps")
    if own is None and isinstance(started.get("steps"), int):
        own = max(1, started["steps"] // 2)
    started = {**started, "anneal_steps": own}
    if settings.anneal_steps is None:
        settings = dataclasses.replace(settings, anneal_steps=own)
    now = json.loads(json.dumps(dataclasses.asdict(settings)))
    changed = [f"{key} {started.get(key)!r} -> {now.get(key)!r}" for key in sorted(set(started) | set(now))
               if key not in RESUMABLE_CHANGES + COMPARED_AS_NAMED and started.get(key) != now.get(key)]
    if record.get("offline_checkpoint") != offline_dir:
        changed.append(f"offline checkpoint {record.get('offline_checkpoint')} -> {offline_dir}")
    if record.get("offline_transitions") != offline_transitions:
        changed.append(f"offline transitions {record.get('offline_transitions')} -> {offline_transitions}")
    if changed:
        raise AqlError(f"cannot resume {settings.out}: it started with other settings ({'; '.join(changed)}); "
                       f"resume with the flags it started with (only {', '.join(RESUMABLE_CHANGES)} may change)")
    return settings


def finetune(settings: FinetuneSettings) -> dict[str, Any]:
    """Fine-tune an offline checkpoint online; returns a summary with the first and last evaluations."""
    from aql_agent.adapters.games import game_kind

    settings = settings.resolved()
    kind = game_kind(settings.env)
    self_play = settings.opponent == "self"
    if self_play and not kind.multi_agent:
        raise AqlError(f"{kind.name} is single-agent: there is no opponent to make the agent itself (--opponent self)")
    kind.check_opponent(None if self_play else settings.opponent)
    kind.check_opponent(settings.eval_opponent, "--eval-opponent")
    envs = settings.envs or (settings.workers if settings.workers and not kind.multi_agent else 1)
    kind.check_rounds(settings.through_bridge, envs)
    checkpoint_dir = offline_dir = os.path.abspath(resolve_checkpoint(settings.checkpoint))
    # self-play: online games against the run's latest checkpoint, evaluations against the offline one
    eval_opponent = settings.eval_opponent or (f"agent:{offline_dir}" if self_play else settings.opponent)
    learner, info, _ = load_learner(checkpoint_dir, settings.device)
    if not learner.fine_tunable:
        from aql_agent.learners import ALGORITHMS

        able = ", ".join(name for name, (kind, _) in ALGORITHMS.items() if kind.fine_tunable)
        raise AqlError(f"{learner.name} learns no value function, so online reward cannot improve it: fine-tune a "
                       f"Q-learning checkpoint ({able})")
    preprocessing = Preprocessing.from_dict(info["preprocessing"])
    kind.check_policy(Policy(learner, preprocessing, info), checkpoint_dir)
    data = _offline_data(settings, checkpoint_dir)
    dataset = load_dataset(data, agent=settings.agent or ("all" if kind.multi_agent else None))
    if learner.discrete:
        dataset = check_discrete_dataset(kind.learner_view(dataset), data)
        check_finite(dataset, data)
    else:
        check_dataset(dataset, data)
    if dataset.observations.shape[1] != learner.obs_dim:
        raise AqlError(f"{data} has {dataset.observations.shape[1]} observation features; the checkpoint takes "
                       f"{learner.obs_dim}: pass the --data it was trained on")

    changes = learner_changes(learner, settings, kind.protected_actions())
    learner = rebuilt_with(learner, changes.pop("config"), settings.device)
    run = RunFolder(settings.out, settings.resume)
    resume = run.resumed_from
    if resume is not None:
        try:
            settings = resumed_settings(settings, offline_dir, len(dataset))
        except BaseException:
            run.close()
            raise
    torch.manual_seed(settings.seed)
    sampler = MixedSampler(TensorSampler(dataset, preprocessing, settings.seed, settings.device, learner.discrete,
                                         learner.returns_discount()),
                           settings.offline_ratio, settings.seed, mark_offline=settings.constrain_on == "offline")
    schedule = FieldSchedule.constraint(learner, settings)  # from the offline checkpoint's constraint
    exploring = FieldSchedule.exploration(learner, settings)
    env_step = 0
    if resume is not None:
        checkpoint_dir, env_step = resume
        learner, _, trainer_state = load_learner(checkpoint_dir, settings.device, expect_algo=learner.name)
        sampler.add(run.load_arrays("online-buffer.npz")["rows"][:int(trainer_state["buffer_rows"])])
        sampler.drawn = {"offline": int(trainer_state["drawn"][0]), "online": int(trainer_state["drawn"][1])}
    logs = os.path.join(settings.out, "online")
    online_opponent = f"agent:{os.path.abspath(checkpoint_dir)}" if self_play else settings.opponent
    collector = kind.collector(logs, settings.seed + (0 if kind.multi_agent else env_step), online_opponent,
                               settings.exploration, through_bridge=settings.through_bridge,
                               rounds=len(glob.glob(os.path.join(logs, "round-*"))) if resume else 0,
                               **({"envs": envs} if envs > 1 else {}))
    if settings.workers is not None:
        collector = _on_ray(collector, kind, settings)
    run.write_json("finetune.json", {
        "settings": dataclasses.asdict(settings), "offline_checkpoint": offline_dir,
        "offline_data": data, "offline_transitions": len(dataset), "algo": learner.name,
        "constraint": dataclasses.asdict(schedule), "exploration": dataclasses.asdict(exploring),
        "learner_changes": changes, "aql_agent_version": __version__})

    metrics_log = run.table("metrics.csv", step=learner.updates if resume else 0, tensorboard=settings.tensorboard)
    rounds_log = run.table("rounds.csv")
    eval_log = run.table("eval.csv")
    summary: dict[str, Any] = {"out": settings.out, "algo": learner.name, "offline_checkpoint": offline_dir}

    def evaluate() -> None:
        result = evaluate_learner(learner, preprocessing, settings.env, settings.eval_episodes, eval_opponent,
                                  settings.seed, env_step)
        eval_log.write(env_step, evaluation_row(result), prefix="eval")
        summary.setdefault("first_evaluation", result)
        summary["evaluation"] = result

    def checkpoint() -> None:
        rows = sampler.online.cpu().numpy()
        run.save_arrays("online-buffer.npz", rows=rows)  # before the checkpoint that counts its rows
        saved = run.save_checkpoint(learner, preprocessing, env_step, {
            "buffer_rows": len(rows), "drawn": torch.tensor([sampler.drawn["offline"], sampler.drawn["online"]]),
            # what makes a resumed run continue exactly (multi-agent games: rounds are whole games): the random
            # streams of exploration and batches, the update owed for a fraction, the metrics window so far
            "torch_rng": torch.get_rng_state(), "offline_rng": sampler.offline.generator.get_state(),
            "online_rng": sampler.generator.get_state(), "owed": owed, "window_count": count,
            "window_sums": dict(sums),
            # a gymnasium env's episode may span the checkpoint: its collector's streams and the episode so far
            **({"collector": json.dumps(collector.state())} if hasattr(collector, "state") else {})})
        if self_play:  # the next rounds play the agent as it is now
            collector.opponent = f"agent:{os.path.abspath(saved)}"

    bar = tqdm(total=settings.steps, initial=env_step, desc=f"finetune {learner.name}", unit="step",
               disable=not settings.progress, dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30.0)
    sums: dict[str, float] = {}
    count, owed, started = 0, 0.0, time.perf_counter()
    if resume is not None and "torch_rng" in trainer_state:  # (checkpoints of 0.1.0 runs hold no streams)
        torch.set_rng_state(trainer_state["torch_rng"])
        sampler.offline.generator.set_state(trainer_state["offline_rng"])
        sampler.generator.set_state(trainer_state["online_rng"])
        owed, count, sums = float(trainer_state["owed"]), int(trainer_state["window_count"]), dict(
            trainer_state["window_sums"])
    try:
        if resume is not None and "collector" in trainer_state and not restore_play(collector, trainer_state,
                                                                                    settings.out):
            warnings.warn(f"resuming {settings.out}: replaying the episode its checkpoint cut ended elsewhere than "
                          "it did when played (another machine's float sums?); the run goes on from there, no longer "
                          "exactly the run that was not stopped")
        if resume is None:
            evaluate()
        next_eval = (env_step // settings.eval_every + 1) * settings.eval_every
        while env_step < settings.steps:
            constraint = schedule.apply(learner, env_step)
            exploration = exploring.apply(learner, env_step)
            ramp = 1.0 if not settings.ramp_steps else min(1.0, env_step / settings.ramp_steps)
            sampler.offline_ratio = 1.0 - (1.0 - settings.offline_ratio) * ramp
            policy = Policy(learner, preprocessing)
            if kind.multi_agent:
                played = collector.play(policy, settings.round_games)
            else:
                played = collector.play(policy, min(settings.round_steps, settings.steps - env_step))
            sampler.add(sampler.offline.rows(played.data))
            learning = max(0, env_step + len(played.data) - max(env_step, settings.online_warmup))
            env_step += len(played.data)
            bar.update(len(played.data))
            owed += learning * settings.updates_per_step
            for _ in range(int(owed)):
                for key, value in learner.update(sampler.sample(learner.config.batch_size)).items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
                if count == settings.log_every:
                    metrics_log.write(learner.updates, {k: v / count for k, v in sums.items()})
                    sums, count = {}, 0
            owed -= int(owed)
            drawn = sampler.drawn["offline"] + sampler.drawn["online"]
            rounds_log.write(env_step, {**played.summary, "transitions": len(played.data),
                                        "online_buffer": len(sampler.online), "updates": learner.updates,
                                        "offline_fraction": sampler.drawn["offline"] / max(1, drawn),
                                        **({"constraint": constraint} if constraint is not None else {}),
                                        **({"exploration": exploration} if exploration is not None else {})},
                             prefix="online")
            if env_step >= next_eval or env_step >= settings.steps:
                evaluate()
                checkpoint()
                next_eval = (env_step // settings.eval_every + 1) * settings.eval_every
    finally:
        bar.close()
        run.close()
        if hasattr(collector, "close"):  # envs and Ray workers held across rounds
            collector.close()
    summary.update({"env_steps": env_step, "updates": learner.updates, "seconds": time.perf_counter() - started,
                    "drawn": dict(sampler.drawn), "constraint": dataclasses.asdict(schedule),
                    "checkpoint": run.checkpoint_dir(env_step)})
    return summary
