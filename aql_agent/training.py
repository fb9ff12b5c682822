"""The offline trainer behind `aql train`: dataset -> tensors -> learner updates -> logs and checkpoints.

The whole dataset lives in one float tensor (one row per transition) and a batch is one `index_select`
with indices from a seeded `torch.Generator`: no Python sampler in the loop. Discrete learners get the same
table with integer actions and legal-action masks; a game's data is seen through its kind's learner view first
(moba-1v1's multi-head actions flattened, say), and evaluation there is a win rate against `opponent`.
Everything that decides the run's future (learner weights and optimisers, the sampler's and torch's RNG
states, the step) goes into each checkpoint of its run folder (`aql_agent.runs`), so `resume=True` continues
bit-exactly.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium import spaces
from tqdm import tqdm

from aql_agent import __version__
from aql_agent.checkpoint import Policy, Preprocessing, load_learner
from aql_agent.data import TransitionDataset
from aql_agent.data.formats import dataset_spaces, load_dataset
from aql_agent.data.validation import action_count, check_dataset, check_discrete_dataset, check_finite
from aql_agent.errors import MAX_SEED, AqlError, DatasetError, require_device, require_exists, require_number
from aql_agent.learners import ALGORITHMS, Batch, Learner, is_discrete, make_learner
from aql_agent.runs import RunFolder, due

if TYPE_CHECKING:
    from aql_agent.data.shards import ShardedDataset
    from aql_agent.data_parallel import Replica


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Everything `aql train` takes; saved as `train.json` in the run folder."""

    algo: str
    """Learner name (see `aql_agent.learners.ALGORITHMS`)."""
    data: str
    """Replay log, folder of logs, D4RL .npz/.hdf5 or Minari dataset."""
    out: str
    """Run folder: train.json, metrics.csv, eval.csv, tensorboard/, checkpoints/, latest.json."""
    steps: int = 100_000
    """Gradient updates in total."""
    seed: int = 0
    """Seeds network initialisation, batch sampling and evaluation episodes."""
    env: str | None = None
    """gymnasium id or game (moba-1v1, connect-four, pettingzoo:MODULE) to evaluate in (and to check the data
    against)."""
    eval_every: int = 5000
    """Updates between evaluations (needs `env`)."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    checkpoint_every: int = 10_000
    """Updates between checkpoints; the last step is always saved."""
    log_every: int = 100
    """Updates averaged into one row of metrics.csv and TensorBoard."""
    normalize_observations: bool = False
    """Standardise observations with the dataset's mean and std (stored in the checkpoint)."""
    reward_scale: float = 1.0
    """Multiply rewards by this during training."""
    agent: str | None = None
    """Whose transitions to learn from in a multi-agent replay log (moba-1v1: blue, red or all)."""
    opponent: str | None = None
    """Who a game's evaluations play against (default: the game's own, moba-1v1's bt:medium)."""
    learner: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Learner config overrides, e.g. {"epsilon": 0.1}."""
    device: str = "cpu"
    """torch device."""
    progress: bool = True
    """Show a tqdm progress bar."""
    tensorboard: bool = True
    """Also write metrics as TensorBoard events."""
    resume: bool = False
    """Continue the run in `out` from its latest checkpoint."""
    resident_shards: int | None = None
    """A sharded dataset folder (`aql convert --workers`): keep only this many shards in memory and stream the
    rest through them (default: load the whole dataset)."""

    def __post_init__(self) -> None:
        for flag in ("steps", "eval_every", "eval_episodes", "checkpoint_every", "log_every"):
            require_number(f"--{flag.replace('_', '-')}", getattr(self, flag), 1, whole=True)
        require_number("--seed", self.seed, 0, MAX_SEED, whole=True)
        require_number("--reward-scale", self.reward_scale, 0, above_low=True)
        require_device(self.device)
        if self.resident_shards is not None:
            require_number("--resident-shards", self.resident_shards, 1, whole=True)
        if self.algo not in ALGORITHMS:
            raise AqlError(f"unknown algorithm {self.algo!r}; choose one of {', '.join(ALGORITHMS)}")
        learner_class, variant = ALGORITHMS[self.algo]
        try:  # a bad --set is refused here, before any data is read
            learner_class.config_class.from_dict({**variant, **self.learner})
        except AqlError as exc:
            raise AqlError(f"--set: {exc}") from None


def check_env_fit(dataset: TransitionDataset, env_id: str, discrete: bool = False) -> spaces.Space:
    """The env's action space, after checking that the dataset's shapes fit the env (seen through the view
    learners take of it)."""
    from aql_agent.adapters.games import game_kind

    obs_space, act_space = game_kind(env_id).learner_spaces()
    wanted = spaces.Discrete if discrete else spaces.Box
    if not isinstance(act_space, wanted):
        raise AqlError(f"{env_id} has a {type(act_space).__name__} action space; "
                       f"{'discrete' if discrete else 'continuous'} learners need a {wanted.__name__}")
    if obs_space.shape != dataset.observations.shape[1:]:
        raise DatasetError(f"the dataset does not fit {env_id}: observations {dataset.observations.shape[1:]} vs "
                           f"the env's {obs_space.shape}; pick the env the data was recorded in")
    if discrete and act_space.n != action_count(dataset):
        raise DatasetError(f"the dataset has {action_count(dataset)} actions, {env_id} has {act_space.n}; pick the "
                           "env the data was recorded in")
    if not discrete and act_space.shape != dataset.actions.shape[1:]:
        raise DatasetError(f"the dataset does not fit {env_id}: actions {dataset.actions.shape[1:]} vs the env's "
                           f"{act_space.shape}; pick the env the data was recorded in")
    return act_space


def learner_view(dataset: TransitionDataset) -> TransitionDataset:
    """A game's dataset as its learners see it (the kind named by the data's env id; others as they are)."""
    from aql_agent.adapters.games import game_kind

    env_id = dataset.metadata.get("env_id")
    return game_kind(env_id).learner_view(dataset) if isinstance(env_id, str) and env_id else dataset


def make_preprocessing(dataset: TransitionDataset, settings: TrainSettings, env_actions: spaces.Box | None,
                       discrete: bool = False) -> Preprocessing:
    obs_dim = dataset.observations.shape[1]
    if discrete:
        low = high = np.zeros(0)
    elif env_actions is not None:
        low, high = env_actions.low, env_actions.high
    else:
        space = dataset_spaces(dataset)[1]
        low, high = getattr(space, "low", None), getattr(space, "high", None)
        if low is None or not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise DatasetError(f"{settings.data}: the action bounds are unknown and the actions leave [-1, 1]; "
                               "pass --env so the bounds come from its action space")
    if not discrete and (np.any(dataset.actions < low - 1e-5) or np.any(dataset.actions > high + 1e-5)):
        raise DatasetError(f"{settings.data}: actions leave the action space [{low}, {high}]")
    mean, std = np.zeros(obs_dim), np.ones(obs_dim)
    if settings.normalize_observations:
        mean = dataset.observations.mean(0)
        std = dataset.observations.std(0) + 1e-3
    return Preprocessing(tuple(map(float, mean)), tuple(map(float, std)), tuple(map(float, low)),
                         tuple(map(float, high)), settings.reward_scale)


def transition_rows(dataset: TransitionDataset, preprocessing: Preprocessing, discrete: bool = False,
                    returns_discount: float | None = None) -> tuple[np.ndarray, list[int], bool]:
    """A dataset as learner-ready float32 rows: (rows [N, columns], column widths, whether masks are in them).

    Columns: observation, action (unit box; a discrete index in one column, exact in float32), reward (scaled),
    next observation, terminal, the scaled discounted return-to-go when `returns_discount` is given (learners
    that ask for it: `Learner.returns_discount`), then the legal-action masks at s and s' as 0/1 when a discrete
    dataset has them."""
    obs = preprocessing.normalise_observations(dataset.observations)
    next_obs = preprocessing.normalise_observations(dataset.next_observations)
    actions = (dataset.actions.astype(np.float32)[:, None] if discrete
               else preprocessing.actions_to_unit(dataset.actions))
    rewards = (dataset.rewards * preprocessing.reward_scale).astype(np.float32)[:, None]
    terminals = dataset.terminals.astype(np.float32)[:, None]
    columns = [obs, actions, rewards, next_obs, terminals]
    if returns_discount is not None:
        returns = dataset.returns_to_go(returns_discount) * preprocessing.reward_scale
        columns.append(returns.astype(np.float32)[:, None])
    masked = discrete and dataset.action_masks is not None
    if masked:
        columns += [dataset.action_masks.astype(np.float32), dataset.next_action_masks.astype(np.float32)]
    return np.concatenate(columns, axis=1), [c.shape[1] for c in columns], masked


class TensorSampler:
    """All transitions as one [N, columns] tensor; a batch is one index_select on seeded random rows."""

    def __init__(self, dataset: TransitionDataset, preprocessing: Preprocessing, seed: int, device: str,
                 discrete: bool = False, returns_discount: float | None = None):
        self.preprocessing, self.discrete, self.returns_discount = preprocessing, discrete, returns_discount
        self.widths: list[int] | None = None
        self.masked = False
        self.table = torch.as_tensor(self.rows(dataset), device=device)
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def rows(self, dataset: TransitionDataset) -> np.ndarray:
        """`dataset` in this sampler's row layout (what `batch` reads), e.g. fine-tuning's online play. The first
        dataset fixes the layout; a later one with other columns (masks where the first had none) is refused
        rather than read with the wrong widths."""
        rows, widths, masked = transition_rows(dataset, self.preprocessing, self.discrete, self.returns_discount)
        if self.widths is None:
            self.widths, self.masked = widths, masked
        elif (widths, masked) != (self.widths, self.masked):
            raise AqlError(f"these transitions have columns of widths {widths} (action masks: {masked}) where this "
                           f"sampler's have {self.widths} (action masks: {self.masked}): record both with the same "
                           "observation and action spaces, with or without legal-action masks")
        return rows

    def sample(self, batch_size: int) -> Batch:
        index = torch.randint(len(self.table), (batch_size,), generator=self.generator, device=self.table.device)
        return self.batch(self.table.index_select(0, index))

    def batch(self, rows: torch.Tensor) -> Batch:
        """Rows of this sampler's layout as a learner batch."""
        obs, act, rew, next_obs, term, *rest = rows.split(self.widths, dim=1)
        if self.discrete:
            act = act.squeeze(1).long()
        returns = rest.pop(0).squeeze(1) if self.returns_discount is not None else None
        masks = [m.bool() for m in rest] if self.masked else [None, None]
        return Batch(obs, act, rew.squeeze(1), next_obs, term.squeeze(1), *masks, returns_to_go=returns)


class ShardSampler(TensorSampler):
    """A sharded dataset (`aql_agent.data.shards`) with only `resident` shards in memory. Batches come uniformly
    from the resident rows; every `refresh_every` batches the longest-resident shard makes way for the next one
    of a seeded shuffle of all shards (a new shuffle each pass). `refresh_every` is a shard's mean rows over the
    batch size, so while resident a shard yields about as many draws as it has rows: over a pass every row is
    drawn about once per epoch of the whole data, as from one table, but memory holds `resident` shards.

    `prepare` turns a shard into learner-ready data (the checks and view `train` applies to a whole dataset)."""

    def __init__(self, shards: ShardedDataset, prepare: Callable[[TransitionDataset], TransitionDataset],
                 preprocessing: Preprocessing, seed: int, device: str, discrete: bool, resident: int,
                 batch_size: int, returns_discount: float | None = None):
        self.shards, self.prepare, self.preprocessing, self.discrete = shards, prepare, preprocessing, discrete
        self.returns_discount = returns_discount  # an episode cut by a shard's end counts what that shard holds
        self.widths, self.masked = None, False
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.shuffler = torch.Generator().manual_seed(seed + 1)  # the shard order, apart from the batches
        self.resident_count = min(resident, len(shards.shards))
        self.refresh_every = max(1, round(len(shards) / len(shards.shards) / batch_size))
        self.order, self.position, self.draws = torch.randperm(len(shards.shards), generator=self.shuffler), 0, 0
        self.resident = [self._next_shard() for _ in range(self.resident_count)]
        self._load()

    def _next_shard(self) -> int:
        if self.position == len(self.order):
            self.order, self.position = torch.randperm(len(self.order), generator=self.shuffler), 0
        index = int(self.order[self.position])
        self.position += 1
        return index

    def _load(self) -> None:
        """The resident shards' rows as one table, read from disk."""
        parts = [self._rows(index) for index in self.resident]
        self.sizes = [len(part) for part in parts]
        self.table = torch.cat(parts)

    def _rows(self, index: int) -> torch.Tensor:
        return torch.as_tensor(self.rows(self.prepare(self.shards.shard(index))), device=self.device)

    def sample(self, batch_size: int) -> Batch:
        self.draws += 1
        if self.draws % self.refresh_every == 0 and len(self.shards.shards) > self.resident_count:
            self.resident = self.resident[1:] + [self._next_shard()]
            rows = self._rows(self.resident[-1])
            self.table = torch.cat([self.table[self.sizes[0]:], rows])  # the oldest shard's rows go
            self.sizes = self.sizes[1:] + [len(rows)]
        return super().sample(batch_size)

    def state(self) -> dict[str, Any]:
        """Where the stream is, for a checkpoint: `load_state` continues it exactly."""
        return {"shuffler": self.shuffler.get_state(), "order": self.order.clone(), "position": self.position,
                "draws": self.draws, "resident": torch.tensor(self.resident)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.shuffler.set_state(state["shuffler"])
        self.order, self.position, self.draws = state["order"].clone(), int(state["position"]), int(state["draws"])
        self.resident = [int(i) for i in state["resident"]]
        self._load()


def same_preprocessing(a: Preprocessing, b: Preprocessing) -> bool:
    """Equal up to the rounding of how the moments were summed (float32 over a table, float64 over shards)."""
    pairs = ((a.obs_mean, b.obs_mean), (a.obs_std, b.obs_std), (a.action_low, b.action_low),
             (a.action_high, b.action_high))
    return a.reward_scale == b.reward_scale and all(
        len(x) == len(y) and np.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in pairs)


def open_shards(settings: TrainSettings) -> ShardedDataset:
    """The sharded dataset `--resident-shards` streams."""
    from aql_agent.data.shards import ShardedDataset, is_sharded

    if not is_sharded(settings.data):
        raise AqlError(f"--resident-shards streams a sharded dataset folder (what `aql convert --workers N` writes); "
                       f"{settings.data} is not one: leave --resident-shards out to load it whole")
    if settings.agent is not None:
        raise AqlError("--agent picks whose transitions a replay log gives; a sharded dataset is already converted "
                       "(choose the agent when converting): leave --agent out")
    return ShardedDataset(settings.data)


def shard_moments(shards: ShardedDataset, prepare: Callable[[TransitionDataset], TransitionDataset]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the observations over every shard, one shard in memory at a time (each one checked by
    `prepare` on the way)."""
    total, sums, squares = 0, 0.0, 0.0
    for index in range(len(shards.shards)):
        observations = prepare(shards.shard(index)).observations.astype(np.float64)
        total += len(observations)
        sums = sums + observations.sum(0)
        squares = squares + np.square(observations).sum(0)
    mean = sums / total
    return mean, np.sqrt(np.maximum(squares / total - np.square(mean), 0.0))


def train(settings: TrainSettings, replica: Replica | None = None) -> dict[str, Any]:
    """Run (or resume) offline training; returns a summary with the last metrics and evaluation.

    With `replica` this process is one of several learning data-parallel (`aql_agent.data_parallel`): each
    replica passes its own `settings.out` (the leader the run folder, the others scratch), and only the leader
    evaluates."""
    require_exists(settings.data, "dataset")
    if settings.opponent is not None:
        if settings.env is None:
            raise AqlError("--opponent is who evaluations play against: it needs --env (the game to evaluate in)")
        from aql_agent.adapters.games import game_kind

        game_kind(settings.env).check_opponent(settings.opponent)
    discrete = is_discrete(settings.algo)

    def prepare(data: TransitionDataset) -> TransitionDataset:
        """`data` as learners see it, checked."""
        if discrete:
            data = check_discrete_dataset(learner_view(data), settings.data)
            check_finite(data, settings.data)
        else:
            check_dataset(data, settings.data)
        return data

    shards = open_shards(settings) if settings.resident_shards is not None else None
    dataset = prepare(shards.shard(0) if shards is not None else load_dataset(settings.data, agent=settings.agent))
    if discrete:
        if settings.env:
            check_env_fit(dataset, settings.env, discrete=True)
        obs_dim, act_dim = dataset.observations.shape[1], action_count(dataset)
        preprocessing = make_preprocessing(dataset, settings, None, discrete=True)
    else:
        env_actions = check_env_fit(dataset, settings.env) if settings.env else None
        preprocessing = make_preprocessing(dataset, settings, env_actions)
        obs_dim, act_dim = dataset.observations.shape[1], dataset.actions.shape[1]
    if shards is not None:  # every shard checked like the first, one in memory at a time
        def prepare_shard(data: TransitionDataset) -> TransitionDataset:
            data = prepare(data)
            fits = (data.observations.shape[1:] == dataset.observations.shape[1:] and
                    (action_count(data) == act_dim if discrete else data.actions.shape[1:] == (act_dim,)))
            if not fits:
                raise DatasetError(f"{settings.data}: its shards hold transitions of different shapes; convert the "
                                   "logs again into one folder")
            if not discrete:
                make_preprocessing(data, settings, env_actions)  # actions inside the bounds the first one set
            return data

        mean, std = shard_moments(shards, prepare_shard)
        if settings.normalize_observations:
            preprocessing = dataclasses.replace(preprocessing, obs_mean=tuple(map(float, mean)),
                                                obs_std=tuple(map(float, std + 1e-3)))

    run = RunFolder(settings.out, settings.resume)
    resume = run.resumed_from

    torch.manual_seed(settings.seed)
    learner = make_learner(settings.algo, obs_dim, act_dim, dict(settings.learner), settings.device)
    start, trainer_state = 0, None
    if resume is not None:
        checkpoint_dir, start = resume
        saved, info, trainer_state = load_learner(checkpoint_dir, settings.device, expect_algo=settings.algo)
        if (info["obs_dim"], info["act_dim"]) != (obs_dim, act_dim):
            raise AqlError(f"cannot resume: the checkpoint has obs_dim={info['obs_dim']}, act_dim={info['act_dim']}"
                           f", the data {obs_dim}, {act_dim}")
        acting = {field: getattr(learner.config, field) for field in ACTING_FIELDS if hasattr(learner.config, field)}
        if dataclasses.replace(saved.config, **acting) != learner.config:
            raise AqlError(f"cannot resume {settings.out}: its learner config {saved.config} differs from the one "
                           f"asked for now {learner.config}; resume with the same settings (only "
                           f"{', '.join(ACTING_FIELDS)} may change)")
        saved.config = learner.config  # with the acting fields asked for now
        started_with = Preprocessing.from_dict(info["preprocessing"])
        if not same_preprocessing(started_with, preprocessing):
            raise AqlError(f"cannot resume {settings.out}: it was trained with other data preprocessing "
                           "(--normalize-observations, --reward-scale or action bounds); resume with the same")
        preprocessing = started_with  # the run's own, bit for bit (moments computed another way may round apart)
        if settings.steps <= start:
            raise AqlError(f"{settings.out} is already at step {start}: pass a --steps above it to train on")
        if ("sampler_stream" in trainer_state) != (shards is not None):
            raise AqlError(f"cannot resume {settings.out}: it was trained {'with' if shards is None else 'without'} "
                           "--resident-shards; resume the way it started")
        learner = saved
    if shards is None:
        sampler = TensorSampler(dataset, preprocessing, settings.seed, settings.device, discrete,
                                learner.returns_discount())
    else:
        sampler = ShardSampler(shards, prepare, preprocessing, settings.seed, settings.device, discrete,
                               settings.resident_shards, learner.config.batch_size, learner.returns_discount())
    if trainer_state is not None:
        sampler.generator.set_state(trainer_state["sampler_rng"])
        if shards is not None:
            sampler.load_state(trainer_state["sampler_stream"])
        torch.set_rng_state(trainer_state["torch_rng"])

    record = {"settings": {**dataclasses.asdict(settings), "learner": dict(settings.learner)},
              "learner_config": learner.config.to_dict(), "aql_agent_version": __version__,
              "torch_version": torch.__version__,
              "dataset": {"transitions": len(dataset) if shards is None else len(shards), "obs_dim": obs_dim,
                          "act_dim": act_dim}}
    if replica is not None:
        record["data_parallel"] = {"replicas": replica.world_size, "batch_per_replica":
                                   learner.config.batch_size // replica.world_size}
    run.write_json("train.json", record)

    metrics_log = run.table("metrics.csv", tensorboard=settings.tensorboard)
    eval_log = run.table("eval.csv")
    summary: dict[str, Any] = {"out": settings.out, "algo": settings.algo, "start_step": start}
    sums: dict[str, float] = {}
    count, started = 0, time.perf_counter()
    if resume is not None:  # the partial logging interval the checkpoint was taken in
        sums = dict(zip(trainer_state["metric_names"], trainer_state["metric_sums"].tolist()))
        count = int(trainer_state["metric_count"])
    if replica is not None:  # every replica continues from the leader's state, weights to metric sums
        shared = replica.share({"learner": learner.state_dict(), "sampler_rng": sampler.generator.get_state(),
                                "sampler_stream": sampler.state() if shards is not None else None,
                                "start": start, "sums": sums, "count": count} if replica.leader else None)
        learner.load_state_dict(shared["learner"])
        sampler.generator.set_state(shared["sampler_rng"])
        if shards is not None:
            sampler.load_state(shared["sampler_stream"])
        start, sums, count = shared["start"], shared["sums"], shared["count"]
        replica.reseed(settings.seed, start)
        replica.attach(learner)
    bar = tqdm(total=settings.steps, initial=start, desc=f"{settings.algo}", disable=not settings.progress,
               unit="step", dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30.0)
    try:
        for step in range(start + 1, settings.steps + 1):
            batch = sampler.sample(learner.config.batch_size)
            metrics = learner.update(batch if replica is None else replica.shard(batch))
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            bar.update(1)
            if due(step, settings.log_every, settings.steps):
                means = ({k: v / count for k, v in sums.items()} if replica is None
                         else replica.mean_metrics(sums, count))
                metrics_log.write(step, means)
                bar.set_postfix({k: f"{means[k]:.3g}" for k in ("critic_loss", "gen_mse") if k in means})
                summary["metrics"], sums, count = means, {}, 0
            if settings.env and due(step, settings.eval_every, settings.steps) and (replica is None or replica.leader):
                summary["evaluation"] = evaluate_learner(learner, preprocessing, settings.env,
                                                         settings.eval_episodes, settings.opponent, settings.seed,
                                                         step)
                eval_log.write(step, evaluation_row(summary["evaluation"]), prefix="eval")
                for key in ("return_mean", "normalized_mean", "win_rate"):
                    if key in summary["evaluation"]:
                        metrics_log.scalar(f"eval/{key}", summary["evaluation"][key], step)
            if due(step, settings.checkpoint_every, settings.steps):
                run.save_checkpoint(learner, preprocessing, step, {
                    "sampler_rng": sampler.generator.get_state(), "torch_rng": torch.get_rng_state(),
                    **({"sampler_stream": sampler.state()} if shards is not None else {}),
                    "metric_names": list(sums), "metric_sums": torch.tensor(list(sums.values()), dtype=torch.float64),
                    "metric_count": count})
    finally:
        bar.close()
        run.close()
    summary["steps"] = settings.steps
    summary["seconds"] = time.perf_counter() - started
    summary["checkpoint"] = run.checkpoint_dir(settings.steps)
    return summary


def evaluation_row(result: dict[str, Any]) -> dict[str, float]:
    """An evaluation's numbers as one eval.csv row: its scalars, and a 95% interval `x_ci95` as x_low, x_high."""
    row: dict[str, float] = {}
    for key, value in result.items():
        if key == "step":
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row[key] = value
        elif key.endswith("_ci95") and isinstance(value, (list, tuple)) and len(value) == 2:
            row[key[:-len("_ci95")] + "_low"], row[key[:-len("_ci95")] + "_high"] = value
    return row


ACTING_FIELDS = ("act_samples", "act_with_targets")
"""Learner config fields that only shape acting: a resumed run may change them, and its training stays the same
(evaluations and checkpoints from then on act the new way)."""


def evaluate_learner(learner: Learner, preprocessing: Preprocessing, env: str, episodes: int, opponent: str | None,
                     seed: int, step: int) -> dict[str, Any]:
    """Evaluate without touching the training RNG streams (so evaluation never changes training); the same
    seeded episodes at every step, so `aql train` and `aql finetune` evaluations compare."""
    from aql_agent.adapters.games import game_kind

    policy = Policy(learner, preprocessing)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + step)
        result = game_kind(env).evaluate(policy, episodes, seed=10_000 * (seed + 1), opponent=opponent)
    result["step"] = step
    return result
