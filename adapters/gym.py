"""Single-agent gymnasium environments (MuJoCo and any Box/Discrete env) as a game kind: make them seeded,
record their episodes into replay logs, evaluate policies, collect rounds of online play, run them as an
external engine over the bridge."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from aql_agent.adapters.games import GameKind, Player, Round, agent_player, log_path
from aql_agent.errors import AqlError
from aql_agent.replay import ReplayWriter
from aql_agent.scores import normalized_score



def make_env(env_id: str, seed: int | None = None, **kwargs: Any) -> gym.Env:
    """`gymnasium.make` with a clear error for unknown ids; `seed` seeds the action space too."""
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as exc:
        raise AqlError(f"cannot make environment {env_id!r}: {exc}") from None
    if seed is not None:
        env.action_space.seed(seed)
    return env


def record_episodes(env: gym.Env, policy: Player, path: str | os.PathLike, episodes: int, *, seed: int = 0,
                    player: Mapping[str, Any] | None = None, info_keys: Iterable[str] = (),
                    compression: str = "none", metadata: Mapping[str, Any] | None = None,
                    overwrite: bool = False, progress: bool = True) -> ReplayWriter:
    """Play `episodes` episodes of `policy` (seeds `seed`, `seed + 1`, ...) and record them to `path`.

    The final observation of each episode goes into its end record, so datasets built from the log have the
    true next observation at every episode end. Returns the closed writer (its `episodes` and `steps`).
    """
    env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    with ReplayWriter(path, env_id, env.observation_space, env.action_space, players=player,
                      info_keys=info_keys, compression=compression, overwrite=overwrite,
                      recorder={"tool": "aql_agent.adapters.gym.record_episodes"},
                      metadata=metadata) as writer:
        for episode in tqdm(range(episodes), desc=f"recording {env_id}", unit="ep", disable=not progress):
            env.action_space.seed(seed + episode)  # a random policy's draws: episode i depends on seed + i only
            observation, _ = env.reset(seed=seed + episode)
            writer.begin_episode(seed=seed + episode)
            done = False
            while not done:
                action = policy(observation)
                next_observation, reward, terminated, truncated, info = env.step(action)
                writer.add_step(observation, action, float(reward), terminated, truncated, info)
                observation = next_observation
                done = terminated or truncated
            writer.end_episode(final_observation=observation)
    return writer


def random_policy(env: gym.Env) -> Player:
    """Uniform random actions from the environment's (seeded) action space."""
    return lambda observation: env.action_space.sample()


def play_episodes(env_id: str, policy: Player, episodes: Iterable[int], seed: int = 0) -> list[dict[str, Any]]:
    """Episode i played from `reset(seed=seed + i)`, the policy's own random draws (BCQ's, BEAR's and AQL's
    sampled proposals) seeded with `seed + i` too, so episode i depends only on `seed + i`: the same on any
    worker and in every call. {"return", "length"} per episode, in order."""
    import torch

    env = make_env(env_id, seed=seed)
    results = []
    try:
        for episode in episodes:
            obs, _ = env.reset(seed=seed + episode)
            total, length, done = 0.0, 0, False
            with torch.random.fork_rng(devices=[]):  # the caller's own random stream goes on untouched
                torch.manual_seed(seed + episode)
                while not done:
                    obs, reward, terminated, truncated, _ = env.step(policy(obs))
                    total += float(reward)
                    length += 1
                    done = terminated or truncated
            results.append({"return": total, "length": length})
    finally:
        env.close()
    return results


def summarise_episodes(env_id: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std of the return and, for D4RL's environments, of the normalised score."""
    returns, lengths = [r["return"] for r in results], [r["length"] for r in results]
    result: dict[str, Any] = {"env": env_id, "episodes": len(results), "return_mean": float(np.mean(returns)),
                              "return_std": float(np.std(returns)), "length_mean": float(np.mean(lengths)),
                              "returns": returns}
    scores = [normalized_score(env_id, r) for r in returns]
    if scores and scores[0] is not None:
        result["normalized_mean"] = float(np.mean(scores))
        result["normalized_std"] = float(np.std(scores))
    return result


def evaluate_policy(env_id: str, policy: Player, episodes: int, seed: int = 0) -> dict[str, Any]:
    """Play `episodes` seeded episodes (seeds seed, seed + 1, ...) and summarise the returns."""
    return summarise_episodes(env_id, play_episodes(env_id, policy, range(episodes), seed))


class GymKind(GameKind):
    """A gymnasium id: episodes scored by return (and D4RL-normalised score where known)."""

    def __init__(self, env_id: str, settings: Mapping[str, Any] | None = None):
        if settings:
            raise AqlError(f"gymnasium envs take no --set settings here (got {sorted(settings)} for {env_id})")
        self.name = env_id

    def learner_spaces(self) -> tuple[gym.Space, gym.Space]:
        env = make_env(self.name)
        try:
            return env.observation_space, env.action_space
        finally:
            env.close()

    def make_player(self, spec: str, seed: int | None = None) -> tuple[Player, dict[str, Any]]:
        if spec.startswith("agent:"):
            policy, who = agent_player(spec)
            self.check_policy(policy, spec)
            return policy, who
        raise AqlError(f"unknown player {spec!r} for {self.name}; gymnasium envs take random or agent:CHECKPOINT")

    def play_games(self, policy: Player, games: Sequence[int], seed: int = 0, opponent: str | None = None,
                   progress: bool = False) -> list[dict[str, Any]]:
        return play_episodes(self.name, policy, games, seed)

    def summarise_games(self, results: list[dict[str, Any]], opponent: str | None = None) -> dict[str, Any]:
        return summarise_episodes(self.name, results)

    def record(self, out_dir: str, player: Any, opponent: str | None = None, *, episodes: int = 1, seed: int = 0,
               side: str | None = None, options: Mapping[str, Any] | None = None, compression: str = "none",
               overwrite: bool = False, progress: bool = True) -> str:
        self.check_options(options)
        if player == "human":
            raise AqlError(f"human play is for games with a keyboard or terminal player; {self.name} records random "
                           "or agent:CHECKPOINT")
        if opponent is not None or side not in (None, "agent"):
            raise AqlError(f"{self.name} is single-agent: it takes no --opponent or --side")
        env = make_env(self.name, seed=seed)
        try:
            if player == "random":
                policy, who, label = random_policy(env), {"kind": "random"}, "random"
            elif isinstance(player, str):
                (policy, who), label = self.make_player(player, seed), player
            else:
                (policy, who), label = player, str(player[1].get("name", "policy"))
            path = log_path(out_dir, self.name, label, None, seed, overwrite)
            record_episodes(env, policy, path, episodes, seed=seed, player=who, compression=compression,
                            overwrite=overwrite, progress=progress, metadata={"seed": seed})
        finally:
            env.close()
        return path

    def collector(self, logs: str, seed: int, opponent: str | None, exploration: float | None,
                  through_bridge: bool = False, rounds: int = 0, envs: int = 1) -> Any:
        self.check_rounds(through_bridge, envs)
        return StepCollectors(self.name, seed, exploration, envs)

    def check_rounds(self, through_bridge: bool, envs: int) -> None:
        if through_bridge:  # an engine plays whole games; these rounds are steps of envs kept across rounds
            raise AqlError(f"--through-bridge plays a multi-agent game's rounds of --round-games games through its "
                           f"engine; {self.name}'s rounds are --round-steps steps of envs kept across rounds: run "
                           "without --through-bridge")

    def bridge_games(self, client: Any, games: Sequence[int], opponent: str | None, side: str, seed: int,
                     progress: bool = False) -> list[dict[str, Any]]:
        if opponent is not None or side not in ("alternate", "agent"):
            raise AqlError(f"{self.name} is single-agent: it takes no --opponent or --side")
        env = make_env(self.name, seed=seed)
        results = []
        try:
            for episode in tqdm(list(games), desc=f"{self.name} over the bridge", unit="ep", disable=not progress):
                observation, _ = env.reset(seed=seed + episode)
                total, reward, step, terminated, truncated = 0.0, 0.0, 0, False, False
                while not (terminated or truncated):
                    action = client.act("agent", seed + episode, step, np.asarray(observation, np.float32),
                                        reward=reward)
                    if isinstance(env.action_space, gym.spaces.Box):
                        action = np.clip(np.asarray(action, np.float32), env.action_space.low, env.action_space.high)
                    observation, reward, terminated, truncated, _ = env.step(action)
                    total, step = total + float(reward), step + 1
                client.end_episode("agent", seed + episode, step, np.asarray(observation, np.float32),
                                   reward=float(reward), terminated=terminated, truncated=truncated)
                results.append({"return": total, "length": step})
        finally:
            env.close()
        return results

    def bridge_spec(self) -> Any:
        spec = super().bridge_spec()
        if not isinstance(self.learner_spaces()[0], gym.spaces.Box):
            raise AqlError(f"{self.name}'s observations are not a flat Box: the bridge carries flat float32 vectors")
        return spec


class StepCollector:
    """Rounds of online play in one gymnasium env kept across rounds (an episode may span two rounds);
    Gaussian exploration noise on continuous actions, the learner's epsilon-greedy on discrete ones. `state`
    and `restore` carry it into a resumed run mid-episode."""

    def __init__(self, env_id: str, seed: int, exploration: float | None):
        import torch

        self.env_id, self.env = env_id, make_env(env_id, seed=seed)
        self.rng = np.random.default_rng(seed)
        self.policy_random = torch.Generator().manual_seed(seed).get_state()  # the policy's own draws
        self.exploration = 0.1 if exploration is None else exploration
        self.episode_start: dict[str, Any] = {"seed": seed}  # how the current episode was reset
        self.episode_actions: list[Any] = []  # and what was played in it since
        self.observation, _ = self.env.reset(seed=seed)
        self.episode_return, self.episodes = 0.0, 0

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs to play on as this collector would (JSON-able): its random streams,
        and the current episode as its reset and its actions so far, for `restore` to replay (an env's inner
        state cannot be copied in general, but the same reset stepped through the same actions reaches it)."""
        return {"episode_start": self.episode_start, "episode_actions": [np.asarray(a).tolist()
                                                                         for a in self.episode_actions],
                "observation": np.asarray(self.observation).tolist(), "noise_random": self.rng.bit_generator.state,
                "policy_random": self.policy_random.tolist(), "episode_return": self.episode_return,
                "episodes": self.episodes}

    def restore(self, state: Mapping[str, Any]) -> bool:
        """Take over `state` (from `state()`), replaying its episode so far in this env; False when the replay
        ends elsewhere than the saved observation (another machine's float sums: the run goes on, not exactly)."""
        import torch

        start = state["episode_start"]
        if "seed" in start:
            observation, _ = self.env.reset(seed=start["seed"])
        else:
            self.env.unwrapped.np_random.bit_generator.state = start["random"]
            observation, _ = self.env.reset()
        continuous = isinstance(self.env.action_space, gym.spaces.Box)
        self.episode_actions = [np.asarray(a, np.float32) if continuous else int(a) for a in state["episode_actions"]]
        for action in self.episode_actions:
            observation, *_ = self.env.step(action)
        self.episode_start, self.observation = dict(start), observation
        self.rng.bit_generator.state = state["noise_random"]
        self.policy_random = torch.tensor(state["policy_random"], dtype=torch.uint8)
        self.episode_return, self.episodes = float(state["episode_return"]), int(state["episodes"])
        return bool(np.array_equal(np.asarray(observation, np.float64), np.asarray(state["observation"], np.float64)))

    def _action(self, policy: Any) -> Any:
        if policy.discrete:
            return int(policy.act(self.observation, deterministic=False))
        action = policy.act(self.observation, deterministic=False)
        low, high = self.env.action_space.low, self.env.action_space.high
        noise = self.rng.normal(0.0, self.exploration, action.shape) * (high - low) / 2
        return np.clip(action + noise, low, high).astype(np.float32)

    def play(self, policy: Any, steps: int) -> Round:
        """`steps` steps; the policy's random draws come from this env's own stream (inside `fork_rng`), so what
        it plays depends on its seed and the policy only, wherever it runs, and never on the learner's updates."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.policy_random)
            played = self._play(policy, steps)
            self.policy_random = torch.get_rng_state()
        return played

    def _play(self, policy: Any, steps: int) -> Round:
        from aql_agent.data import TransitionDataset

        rows: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                                                  "terminals", "timeouts")}
        returns = []
        for _ in range(steps):
            action = self._action(policy)
            next_observation, reward, terminated, truncated, _ = self.env.step(action)
            for key, value in zip(rows, (self.observation, action, reward, next_observation, terminated, truncated)):
                rows[key].append(value)
            self.episode_return += float(reward)
            self.observation = next_observation
            self.episode_actions.append(action)
            if terminated or truncated:
                returns.append(self.episode_return)
                self.episode_return, self.episodes = 0.0, self.episodes + 1
                self.episode_start = {"random": self.env.unwrapped.np_random.bit_generator.state}
                self.episode_actions = []
                self.observation, _ = self.env.reset()
        rows["timeouts"][-1] = rows["timeouts"][-1] or not rows["terminals"][-1]  # the round may end mid-episode
        data = TransitionDataset(np.asarray(rows["observations"], np.float32), np.asarray(rows["actions"]),
                                 np.asarray(rows["rewards"], np.float32),
                                 np.asarray(rows["next_observations"], np.float32),
                                 np.asarray(rows["terminals"], bool), np.asarray(rows["timeouts"], bool),
                                 metadata={"env_id": self.env_id, "source": ["aql finetune"]})
        summary = {"episodes": len(returns)}
        if returns:
            summary["return_mean"] = float(np.mean(returns))
        return Round(data, summary)


#: env k of a round's envs is seeded `seed + ENV_SEED_STRIDE * k`
ENV_SEED_STRIDE = 7919


class StepCollectors:
    """Rounds of online play in `envs` gymnasium envs, each a `StepCollector` kept across rounds and seeded
    `seed + ENV_SEED_STRIDE * k`: a round's steps are split evenly (the first envs take one more) and played env
    after env, the data in env order (`aql finetune --envs N`, as SB3's n_envs). Each env's play depends on its
    seed and the policy only, so `aql_agent.distributed.StepsOnRay`, which keeps the envs on Ray workers,
    plays the same steps."""

    def __init__(self, env_id: str, seed: int, exploration: float | None, envs: int = 1):
        self.env_id, self.seed, self.exploration = env_id, seed, exploration
        self.collectors = [StepCollector(env_id, seed + ENV_SEED_STRIDE * k, exploration) for k in range(envs)]

    def play(self, policy: Any, steps: int) -> Round:
        return merge_rounds([collector.play(policy, part) for collector, part in
                             zip(self.collectors, split_steps(steps, len(self.collectors))) if part])

    def state(self) -> list[dict[str, Any]]:
        """Each env's `StepCollector.state`, in env order."""
        return [collector.state() for collector in self.collectors]

    def restore(self, states: Sequence[Mapping[str, Any]]) -> bool:
        """Each env takes over its state; False when any replay ended elsewhere (see `StepCollector.restore`)."""
        require_same_envs(states, len(self.collectors))
        return all([collector.restore(state) for collector, state in zip(self.collectors, states)])

    def close(self) -> None:
        for collector in self.collectors:
            collector.env.close()


def require_same_envs(states: Sequence[Any], envs: int) -> None:
    """A checkpoint's per-env play states must be as many as the envs that take them over."""
    if len(states) != envs:
        raise AqlError(f"the checkpoint's online play ran {len(states)} envs, this run {envs}: resume with the "
                       "--envs it started with")


def split_steps(steps: int, envs: int) -> list[int]:
    """`steps` over `envs` envs as evenly as whole steps allow, the first ones taking one more."""
    return [steps // envs + (k < steps % envs) for k in range(envs)]


def merge_rounds(rounds: Sequence[Round]) -> Round:
    """The rounds of several envs as one: their transitions in order, episodes summed, the mean return over
    all the episodes that ended."""
    from aql_agent.data import TransitionDataset

    data = rounds[0].data if len(rounds) == 1 else TransitionDataset.concatenate([r.data for r in rounds])
    episodes = sum(r.summary["episodes"] for r in rounds)
    summary: dict[str, float] = {"episodes": episodes}
    if episodes:
        summary["return_mean"] = float(sum(r.summary.get("return_mean", 0.0) * r.summary["episodes"]
                                           for r in rounds) / episodes)
    return Round(data, summary)
