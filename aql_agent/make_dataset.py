"""D4RL-style datasets on today's gymnasium and MuJoCo: train a SAC behaviour policy, then collect.

`aql make-dataset --env Hopper-v5 --out datasets/hopper` runs two phases in one folder:

1. **behaviour**: the project's own SAC learns online (uniform random actions for `learning_starts` steps,
   then one update per environment step), in the run folder `OUT/behaviour/` (`aql_agent.runs`: checkpoints/,
   latest.json, metrics.csv and TensorBoard, eval.csv, the replay buffer as buffer.npz). Every
   `snapshot_every` steps a checkpoint is saved with its deterministic evaluation return (in card.json), so an
   interrupted run resumes from its last snapshot.
2. **datasets**, as D4RL made them: `random` (uniform actions), `medium` (the snapshot whose return is nearest
   to `medium_fraction` of the way from random to the final policy, stochastic actions), `expert` (the final
   policy, stochastic), `medium-replay` (the replay buffer up to the medium snapshot), `medium-expert` (medium
   then expert). Each is written as a replay log, a D4RL-keyed `.npz` and `.hdf5`, into `NAME-KIND.*`; a file
   appears under its final name only when complete (staged, then renamed). `card.json` records the env, seeds,
   budgets, every snapshot's return, what was chosen, each dataset's statistics and the library versions.

Episodes end with `terminals` only where the environment terminated, `timeouts` at its time limit and at the
cut that ends a dataset (or the replay buffer) mid-episode.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from aql_agent import __version__
from aql_agent.checkpoint import Preprocessing, load_learner, load_policy
from aql_agent.data import TransitionDataset, load_dataset, save_dataset
from aql_agent.errors import MAX_SEED, AqlError, require_number
from aql_agent.learners import make_learner
from aql_agent.learners.base import Batch
from aql_agent.replay import ReplayWriter
from aql_agent.runs import FolderLock, RunFolder, due
from aql_agent.scores import normalized_score

#: SAC updates averaged into one row of the behaviour run's metrics.csv
METRICS_EVERY = 1000
KINDS = ("random", "medium", "expert", "medium-replay", "medium-expert")


@dataclasses.dataclass
class MakeDatasetSettings:
    """Everything `aql make-dataset` takes; saved in card.json."""

    env: str
    """A continuous-action gymnasium id (Hopper-v5, HalfCheetah-v5, Walker2d-v5, Pendulum-v1, ...)."""
    out: str
    """Folder for the behaviour run, the datasets and card.json."""
    train_steps: int = 300_000
    """Environment steps of SAC training (the shared Hopper sets used 300k)."""
    transitions: int = 100_000
    """Transitions per collected dataset (D4RL: 1M)."""
    snapshot_every: int = 20_000
    """Steps between behaviour snapshots (each evaluated and kept)."""
    learning_starts: int = 5_000
    """Uniform random steps before SAC starts updating."""
    eval_episodes: int = 5
    """Deterministic episodes per snapshot evaluation."""
    medium_fraction: float = 1 / 3
    """Where the medium policy sits between the random and the final policy's return."""
    min_gain: float = 100.0
    """The final policy must beat random play by this much return, or there is no medium policy to take."""
    kinds: tuple[str, ...] = KINDS
    """Which datasets to collect: random, medium, expert, medium-replay, medium-expert."""
    hidden: tuple[int, ...] = (256, 256)
    """SAC's hidden layers."""
    seed: int = 0
    """Seeds SAC, the environment and the collection."""
    name: str | None = None
    """File prefix (default: the env id's lowercase base, e.g. hopper)."""
    progress: bool = True
    """Show tqdm progress bars."""
    resume: bool = False
    """Continue an interrupted run in `out` (training from its last snapshot, collection where it stopped)."""

    def __post_init__(self) -> None:
        for flag in ("train_steps", "transitions", "snapshot_every", "eval_episodes"):
            require_number(f"--{flag.replace('_', '-')}", getattr(self, flag), 1, whole=True)
        require_number("--learning-starts", self.learning_starts, 0, whole=True)
        require_number("--medium-fraction", self.medium_fraction, 0, 1, above_low=True)
        if self.min_gain != -float("inf"):  # -inf: take whatever the training reached
            require_number("--min-gain", self.min_gain)
        require_number("--seed", self.seed, 0, MAX_SEED, whole=True)
        for size in self.hidden:
            require_number("--hidden", size, 1, whole=True)
        if self.name is not None and (not self.name or os.path.basename(self.name) != self.name
                                      or self.name in (".", "..")):
            raise AqlError(f"--name is a file prefix inside --out, not a path: got {self.name!r}")


class ReplayBuffer:
    """Every online transition in order (no overwriting): sampled for SAC, sliced for medium-replay."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        self.observations = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros((capacity, act_dim), np.float32)
        self.rewards = np.zeros(capacity, np.float32)
        self.next_observations = np.zeros((capacity, obs_dim), np.float32)
        self.terminals = np.zeros(capacity, bool)
        self.timeouts = np.zeros(capacity, bool)
        self.size = 0

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        i = self.size
        self.observations[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.next_observations[i], self.terminals[i], self.timeouts[i] = next_obs, terminated, truncated
        self.size += 1

    def sample(self, rng: np.random.Generator, batch_size: int, low: np.ndarray, high: np.ndarray) -> Batch:
        index = rng.integers(0, self.size, batch_size)
        unit = 2.0 * (self.actions[index] - low) / (high - low) - 1.0
        return Batch(torch.from_numpy(self.observations[index]), torch.from_numpy(unit.astype(np.float32)),
                     torch.from_numpy(self.rewards[index]), torch.from_numpy(self.next_observations[index]),
                     torch.from_numpy(self.terminals[index].astype(np.float32)))

    def dataset(self, size: int, env_id: str, source: str) -> TransitionDataset:
        part = slice(0, size)
        timeouts = self.timeouts[part].copy()
        if size and not (self.terminals[size - 1] or timeouts[-1]):
            timeouts[-1] = True  # the buffer is cut mid-episode here
        return TransitionDataset(self.observations[part].copy(), self.actions[part].copy(), self.rewards[part].copy(),
                                 self.next_observations[part].copy(), self.terminals[part].copy(), timeouts,
                                 metadata={"env_id": env_id, "source": [source]})

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k)[:self.size] for k in ("observations", "actions", "rewards", "next_observations",
                                                          "terminals", "timeouts")}

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.size = len(arrays["rewards"])
        for key, value in arrays.items():
            getattr(self, key)[:self.size] = value


def _evaluate(env_id: str, act, episodes: int, seed: int) -> float:
    from aql_agent.adapters.gym import evaluate_policy

    return float(evaluate_policy(env_id, act, episodes, seed=seed)["return_mean"])


class DatasetMaker:
    """The two phases of the module docstring, resumable."""

    def __init__(self, settings: MakeDatasetSettings):
        s = self.settings = settings
        unknown = set(s.kinds) - set(KINDS)
        if unknown:
            raise AqlError(f"unknown dataset kinds {sorted(unknown)}; choose from {list(KINDS)}")
        if s.train_steps < s.snapshot_every:
            raise AqlError(f"--train-steps ({s.train_steps}) must cover at least one snapshot "
                           f"(--snapshot-every {s.snapshot_every})")
        from aql_agent.adapters.mujoco import make_continuous_env, resolve_env_id

        s.env = resolve_env_id(s.env)
        self.env = make_continuous_env(s.env)
        self.name = s.name or s.env.split("-")[0].lower()
        self.obs_dim = self.env.observation_space.shape[0]
        self.act_dim = self.env.action_space.shape[0]
        self.low = self.env.action_space.low.astype(np.float32)
        self.high = self.env.action_space.high.astype(np.float32)
        self.behaviour = os.path.join(s.out, "behaviour")
        self.card_path = os.path.join(s.out, "card.json")
        self.lock = FolderLock(s.out, "a dataset run")  # released when `run` ends (or the process does)
        if os.path.exists(self.card_path) and not s.resume:
            self.lock.release()
            raise AqlError(f"{s.out} already holds a dataset run: pass --resume to continue it, or choose another "
                           "--out")
        settings = {k: (list(v) if isinstance(v, tuple) else v)
                    for k, v in dataclasses.asdict(s).items() if k not in ("progress", "resume")}
        if s.resume and os.path.exists(self.card_path):
            self.card = self._load_card()
            if self.card["settings"] != settings:  # e.g. extended with more --train-steps: keep what came before
                self.card.setdefault("earlier_settings", []).append(self.card["settings"])
                self.card["settings"] = settings
        else:
            self.card = {"env": s.env, "settings": settings, "versions": self._versions(), "snapshots": [],
                         "datasets": {}}

    # -- card --------------------------------------------------------------------------------------------
    @staticmethod
    def _versions() -> dict[str, str]:
        import gymnasium

        versions = {"aql_agent": __version__, "gymnasium": gymnasium.__version__, "torch": torch.__version__,
                    "numpy": np.__version__}
        try:
            import mujoco
            versions["mujoco"] = mujoco.__version__
        except ImportError:
            pass
        return versions

    def _load_card(self) -> dict:
        with open(self.card_path) as f:
            card = json.load(f)
        if card["env"] != self.settings.env:
            raise AqlError(f"{self.settings.out} was made for {card['env']}, not {self.settings.env}")
        return card

    def _save_card(self) -> None:
        os.makedirs(self.settings.out, exist_ok=True)
        staging = self.card_path + ".tmp"
        with open(staging, "w") as f:
            json.dump(self.card, f, indent=2)
        os.replace(staging, self.card_path)

    # -- phase 1: the behaviour policy --------------------------------------------------------------------
    def train_behaviour(self) -> None:
        s = self.settings
        run = RunFolder(self.behaviour, resume=True)  # the card already refused an unasked resume
        done = run.start_step
        if done >= s.train_steps:
            return
        torch.manual_seed(s.seed)
        learner = make_learner("sac", self.obs_dim, self.act_dim, {"hidden": list(s.hidden)})
        preprocessing = Preprocessing((0.0,) * self.obs_dim, (1.0,) * self.obs_dim, tuple(self.low.tolist()),
                                      tuple(self.high.tolist()))
        buffer = ReplayBuffer(s.train_steps, self.obs_dim, self.act_dim)
        rng = np.random.default_rng(s.seed)
        episode = 0
        if done:  # resume from the last snapshot
            learner, _, trainer = load_learner(run.resumed_from[0], expect_algo="sac")
            size = int(trainer["buffer_size"].item())
            buffer.restore({k: v[:size] for k, v in run.load_arrays("buffer.npz").items()})
            if buffer.size and not (buffer.terminals[buffer.size - 1] or buffer.timeouts[buffer.size - 1]):
                buffer.timeouts[buffer.size - 1] = True  # the episode in progress was cut by the interruption
            rng = np.random.default_rng(int(trainer["rng_seed"].item()) + done)
            torch.manual_seed(s.seed + done)
            episode = int(trainer["episodes"].item())
        self.card["snapshots"] = [snap for snap in self.card["snapshots"] if snap["step"] <= done]
        run.write_json("behaviour.json", {"algo": "sac", "env": s.env, "settings": self.card["settings"],
                                          "learner_config": learner.config.to_dict()})
        metrics_log = run.table("metrics.csv", tensorboard=True)
        eval_log = run.table("eval.csv")
        self.env.action_space.seed(s.seed + done)
        obs, _ = self.env.reset(seed=s.seed + episode)
        bar = tqdm(total=s.train_steps, initial=done, desc=f"SAC on {s.env}", unit="step", disable=not s.progress)
        sums: dict[str, float] = {}
        count = 0
        try:
            for step in range(done, s.train_steps):
                if step < s.learning_starts:
                    action = self.env.action_space.sample()
                else:
                    unit = learner.act(obs, deterministic=False)
                    action = preprocessing.actions_from_unit(unit)
                next_obs, reward, terminated, truncated, _ = self.env.step(action)
                buffer.add(obs, action, reward, next_obs, terminated, truncated)
                obs = next_obs
                if terminated or truncated:
                    episode += 1
                    obs, _ = self.env.reset(seed=s.seed + episode)
                if step >= s.learning_starts:
                    for key, value in learner.update(buffer.sample(rng, learner.config.batch_size, self.low,
                                                                   self.high)).items():
                        sums[key] = sums.get(key, 0.0) + value
                    count += 1
                if count and due(step + 1, METRICS_EVERY, s.train_steps):
                    metrics_log.write(step + 1, {k: v / count for k, v in sums.items()})
                    sums, count = {}, 0
                if due(step + 1, s.snapshot_every, s.train_steps):
                    self._snapshot(run, learner, preprocessing, buffer, step + 1, episode)
                    eval_log.write(step + 1, {"return_mean": self.card["snapshots"][-1]["return"]}, prefix="eval")
                    bar.set_postfix(eval_return=f"{self.card['snapshots'][-1]['return']:.0f}")
                bar.update(1)
        finally:
            bar.close()
            run.close()

    def _snapshot(self, run: RunFolder, learner, preprocessing: Preprocessing, buffer: ReplayBuffer, step: int,
                  episode: int) -> None:
        """A checkpoint of the behaviour run (learner, RNG seed, episode count, buffer size) with the buffer
        beside it, evaluated into the card: the medium and expert candidates, and where a resume starts."""
        s = self.settings
        run.save_arrays("buffer.npz", **buffer.arrays())  # before the checkpoint that counts its rows
        path = run.save_checkpoint(learner, preprocessing, step, {
            "rng_seed": torch.tensor(s.seed), "episodes": torch.tensor(episode),
            "buffer_size": torch.tensor(buffer.size)})
        returns = _evaluate(s.env, load_policy(path), s.eval_episodes, seed=10_000 + s.seed)
        self.card["snapshots"].append({"step": step, "return": returns, "checkpoint": os.path.relpath(path, s.out)})
        self._save_card()

    # -- phase 2: the datasets ----------------------------------------------------------------------------
    def choose_policies(self) -> tuple[dict, dict, float]:
        """(medium snapshot, expert snapshot, random return); errors when training reached no medium policy."""
        s = self.settings
        if "random_return" not in self.card:
            self.env.action_space.seed(s.seed)
            self.card["random_return"] = _evaluate(s.env, lambda _: self.env.action_space.sample(), s.eval_episodes,
                                                   seed=10_000 + s.seed)
            self._save_card()
        random_return = self.card["random_return"]
        snapshots = self.card["snapshots"]
        expert = snapshots[-1]
        returns = ", ".join(f"{snap['step']}: {snap['return']:.1f}" for snap in snapshots)
        if expert["return"] - random_return < s.min_gain:
            raise AqlError(f"the behaviour policy reached a return of {expert['return']:.1f} against random play's "
                           f"{random_return:.1f} (snapshots {returns}): less than --min-gain {s.min_gain} above "
                           "random, so there is no medium policy; raise --train-steps")
        target = random_return + s.medium_fraction * (expert["return"] - random_return)
        candidates = snapshots[:-1] or snapshots
        medium = min(candidates, key=lambda snap: abs(snap["return"] - target))
        self.card["medium"] = {**medium, "target_return": target}
        self.card["expert"] = expert
        self._save_card()
        return medium, expert, random_return

    def collect(self) -> None:
        s = self.settings
        medium, expert, _ = self.choose_policies()
        sources = {"random": None, "medium": medium, "expert": expert}
        for kind in s.kinds:
            if kind in self.card["datasets"]:
                continue
            if kind in sources:
                data = self._rollouts(kind, sources[kind])
            elif kind == "medium-replay":
                with RunFolder(self.behaviour, resume=True) as behaviour:
                    arrays = behaviour.load_arrays("buffer.npz")
                buffer = ReplayBuffer(len(arrays["rewards"]), self.obs_dim, self.act_dim)
                buffer.restore(arrays)
                data = buffer.dataset(medium["step"], s.env, f"SAC replay buffer, steps 0-{medium['step']}")
                self._write(kind, data)
            else:  # medium-expert
                parts = [self._load(part) for part in ("medium", "expert")]
                data = TransitionDataset.concatenate(parts)
                self._write(kind, data)
            self._record(kind, data)

    def _rollouts(self, kind: str, snapshot: dict | None) -> TransitionDataset:
        """`transitions` steps of the policy (stochastic, as D4RL) into a replay log, then npz and hdf5."""
        s = self.settings
        policy = None if snapshot is None else load_policy(os.path.join(s.out, snapshot["checkpoint"]))
        if policy is not None:
            torch.manual_seed(s.seed + 1)
        self.env.action_space.seed(s.seed + 2)
        player = ({"kind": "random"} if policy is None else
                  {"kind": "agent", "name": "sac", "checkpoint": snapshot["checkpoint"], "step": snapshot["step"],
                   "eval_return": snapshot["return"], "actions": "stochastic"})
        staging = os.path.join(s.out, ".staging")
        os.makedirs(staging, exist_ok=True)
        log = os.path.join(staging, f"{self.name}-{kind}.aqlog")
        steps, episode = 0, 0
        bar = tqdm(total=s.transitions, desc=f"collecting {kind}", unit="step", disable=not s.progress)
        with ReplayWriter(log, s.env, self.env.observation_space, self.env.action_space, players=player,
                          recorder={"tool": "aql make-dataset"}, overwrite=True,
                          metadata={"dataset": f"{self.name}-{kind}", "seed": s.seed}) as writer:
            while steps < s.transitions:
                seed = s.seed + 1_000_000 + episode
                obs, _ = self.env.reset(seed=seed)
                writer.begin_episode(seed=seed)
                done = False
                while not done:
                    if policy is None:
                        action = self.env.action_space.sample()
                    else:
                        action = policy.act(obs, deterministic=False)
                    next_obs, reward, terminated, truncated, _ = self.env.step(action)
                    steps += 1
                    truncated = truncated or steps == s.transitions  # the dataset ends mid-episode here
                    writer.add_step(obs, action, reward, terminated, truncated)
                    obs, done = next_obs, terminated or truncated
                    bar.update(1)
                writer.end_episode(final_observation=obs)
                episode += 1
        bar.close()
        data = load_dataset(log)
        self._write(kind, data, log=log)
        return data

    def _write(self, kind: str, data: TransitionDataset, log: str | None = None) -> None:
        """All three files of a dataset, staged and then renamed, so a final name means a complete file."""
        s = self.settings
        staging = os.path.join(s.out, ".staging")
        os.makedirs(staging, exist_ok=True)
        stem = f"{self.name}-{kind}"
        if log is None:
            log = os.path.join(staging, stem + ".aqlog")
            save_dataset(data, log, overwrite=True)
        for suffix in (".npz", ".hdf5"):
            save_dataset(data, os.path.join(staging, stem + suffix), overwrite=True)
        for suffix in (".aqlog", ".npz", ".hdf5"):
            os.replace(os.path.join(staging, stem + suffix), os.path.join(s.out, stem + suffix))

    def _load(self, kind: str) -> TransitionDataset:
        return load_dataset(os.path.join(self.settings.out, f"{self.name}-{kind}.npz"))

    def _record(self, kind: str, data: TransitionDataset) -> None:
        returns = np.array([data.rewards[part].sum() for part in data.episode_slices()])
        mean = float(returns.mean())
        entry: dict[str, Any] = {"files": [f"{self.name}-{kind}{suffix}" for suffix in (".aqlog", ".npz", ".hdf5")],
                                 "transitions": len(data), "episodes": len(returns), "return_mean": mean,
                                 "return_std": float(returns.std()), "terminals": int(data.terminals.sum()),
                                 "timeouts": int(data.timeouts.sum()), "sha256": data.digest()}
        score = normalized_score(self.settings.env, mean)
        if score is not None:
            entry["normalized"] = score
        self.card["datasets"][kind] = entry
        self._save_card()

    def run(self) -> dict:
        try:
            self.train_behaviour()
            self.collect()
            shutil.rmtree(os.path.join(self.settings.out, ".staging"), ignore_errors=True)
        finally:
            self.env.close()
            self.lock.release()
        return self.card


def make_datasets(settings: MakeDatasetSettings) -> dict:
    """Train the behaviour policy and collect the datasets; returns card.json's content."""
    return DatasetMaker(settings).run()
