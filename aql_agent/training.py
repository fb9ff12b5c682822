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
from collections.abc import Mapping
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

    def __post_init__(self) -> None:
        for flag in ("steps", "eval_every", "eval_episodes", "checkpoint_every", "log_every"):
            require_number(f"--{flag.replace('_', '-')}", getattr(self, flag), 1, whole=True)
        require_number("--seed", self.seed, 0, MAX_SEED, whole=True)
        require_number("--reward-scale", self.reward_scale, 0, above_low=True)
        require_device(self.device)
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


def transition_rows(dataset: TransitionDataset, preprocessing: Preprocessing, discrete: bool = False
                    ) -> tuple[np.ndarray, list[int], bool]:
    """A dataset as learner-ready float32 rows: (rows [N, columns], column widths, whether masks are in them).

    Columns: observation, action (unit box; a discrete index in one column, exact in float32), reward (scaled),
    next observation, terminal, then the legal-action masks at s and s' as 0/1 when a discrete dataset has them."""
    obs = preprocessing.normalise_observations(dataset.observations)
    next_obs = preprocessing.normalise_observations(dataset.next_observations)
    actions = (dataset.actions.astype(np.float32)[:, None] if discrete
               else preprocessing.actions_to_unit(dataset.actions))
    rewards = (dataset.rewards * preprocessing.reward_scale).astype(np.float32)[:, None]
    terminals = dataset.terminals.astype(np.float32)[:, None]
    columns = [obs, actions, rewards, next_obs, terminals]
    masked = discrete and dataset.action_masks is not None
    if masked:
        columns += [dataset.action_masks.astype(np.float32), dataset.next_action_masks.astype(np.float32)]
    return np.concatenate(columns, axis=1), [c.shape[1] for c in columns], masked


class TensorSampler:
    """All transitions as one [N, columns] tensor; a batch is one index_select on seeded random rows."""

    def __init__(self, dataset: TransitionDataset, preprocessing: Preprocessing, seed: int, device: str,
                 discrete: bool = False):
        rows, self.widths, self.masked = transition_rows(dataset, preprocessing, discrete)
        self.table = torch.as_tensor(rows, device=device)
        self.discrete = discrete
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def sample(self, batch_size: int) -> Batch:
        index = torch.randint(len(self.table), (batch_size,), generator=self.generator, device=self.table.device)
        return self.batch(self.table.index_select(0, index))

    def batch(self, rows: torch.Tensor) -> Batch:
        """Rows of this sampler's layout as a learner batch."""
        obs, act, rew, next_obs, term, *masks = rows.split(self.widths, dim=1)
        if self.discrete:
            act = act.squeeze(1).long()
        masks = [m.bool() for m in masks] if self.masked else [None, None]
        return Batch(obs, act, rew.squeeze(1), next_obs, term.squeeze(1), *masks)


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
    dataset = load_dataset(settings.data, agent=settings.agent)
    discrete = is_discrete(settings.algo)
    if discrete:
        dataset = check_discrete_dataset(learner_view(dataset), settings.data)
        if settings.env:
            check_env_fit(dataset, settings.env, discrete=True)
        obs_dim, act_dim = dataset.observations.shape[1], action_count(dataset)
        check_finite(dataset, settings.data)
        preprocessing = make_preprocessing(dataset, settings, None, discrete=True)
    else:
        check_dataset(dataset, settings.data)
        env_actions = check_env_fit(dataset, settings.env) if settings.env else None
        preprocessing = make_preprocessing(dataset, settings, env_actions)
        obs_dim, act_dim = dataset.observations.shape[1], dataset.actions.shape[1]

    run = RunFolder(settings.out, settings.resume)
    resume = run.resumed_from

    torch.manual_seed(settings.seed)
    learner = make_learner(settings.algo, obs_dim, act_dim, dict(settings.learner), settings.device)
    sampler = TensorSampler(dataset, preprocessing, settings.seed, settings.device, discrete)
    start = 0
    if resume is not None:
        checkpoint_dir, start = resume
        saved, info, trainer_state = load_learner(checkpoint_dir, settings.device, expect_algo=settings.algo)
        if (info["obs_dim"], info["act_dim"]) != (obs_dim, act_dim):
            raise AqlError(f"cannot resume: the checkpoint has obs_dim={info['obs_dim']}, act_dim={info['act_dim']}"
                           f", the data {obs_dim}, {act_dim}")
        if saved.config != learner.config:
            raise AqlError(f"cannot resume {settings.out}: its learner config {saved.config} differs from the one "
                           f"asked for now {learner.config}; resume with the same settings")
        if Preprocessing.from_dict(info["preprocessing"]) != preprocessing:
            raise AqlError(f"cannot resume {settings.out}: it was trained with other data preprocessing "
                           "(--normalize-observations, --reward-scale or action bounds); resume with the same")
        if settings.steps <= start:
            raise AqlError(f"{settings.out} is already at step {start}: pass a --steps above it to train on")
        learner = saved
        sampler.generator.set_state(trainer_state["sampler_rng"])
        torch.set_rng_state(trainer_state["torch_rng"])

    record = {"settings": {**dataclasses.asdict(settings), "learner": dict(settings.learner)},
              "learner_config": learner.config.to_dict(), "aql_agent_version": __version__,
              "torch_version": torch.__version__, "dataset": {"transitions": len(dataset), "obs_dim": obs_dim,
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
                                "start": start, "sums": sums, "count": count} if replica.leader else None)
        learner.load_state_dict(shared["learner"])
        sampler.generator.set_state(shared["sampler_rng"])
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
                eval_log.write(step, {k: v for k, v in summary["evaluation"].items() if k != "step"
                                      and isinstance(v, (int, float)) and not isinstance(v, bool)}, prefix="eval")
                for key in ("return_mean", "normalized_mean", "win_rate"):
                    if key in summary["evaluation"]:
                        metrics_log.scalar(f"eval/{key}", summary["evaluation"][key], step)
            if due(step, settings.checkpoint_every, settings.steps):
                run.save_checkpoint(learner, preprocessing, step, {
                    "sampler_rng": sampler.generator.get_state(), "torch_rng": torch.get_rng_state(),
                    "metric_names": list(sums), "metric_sums": torch.tensor(list(sums.values()), dtype=torch.float64),
                    "metric_count": count})
    finally:
        bar.close()
        run.close()
    summary["steps"] = settings.steps
    summary["seconds"] = time.perf_counter() - started
    summary["checkpoint"] = run.checkpoint_dir(settings.steps)
    return summary


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
