"""Small logs and datasets made on the spot: tests never read shared data."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame windows in tests are headless
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import signal  # noqa: E402

# A suite started with SIGINT ignored (nohup, a background job of a non-interactive shell) passes that on to every
# process it starts, so Ctrl-C tests and the agents they stop with SIGINT would see nothing: handle it as Python
# does by default (a caught signal is reset to the default on exec, so the children's Python handles it too).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from gymnasium import spaces  # noqa: E402

from aql_agent.replay import ReplayWriter  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under scripts/test.sh's `--dist loadgroup` a test file is one unit of work (its module fixtures are built
    once); files that start a local Ray are marked into one group, so two Rays never share the 2 cores."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


OBS_SPACE = spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT_SPACE = spaces.Box(-1.0, 1.0, (2,), np.float32)
MASKED_OBS = spaces.Dict({"observation": spaces.Box(-1.0, 1.0, (4,), np.float32),
                          "action_mask": spaces.MultiBinary(6)})
MOBA_ACTION = spaces.MultiDiscrete([3, 2])


@dataclass
class Recorded:
    """What a test wrote, per agent: to compare with what the reader gives back."""

    path: str
    steps: dict[str, list[tuple]] = field(default_factory=dict)  # agent -> (episode, obs, act, r, term, trunc, info)
    finals: dict[tuple[int, str], object] = field(default_factory=dict)
    outcomes: dict[tuple[int, str], str | None] = field(default_factory=dict)
    lengths: list[int] = field(default_factory=list)


def write_single_agent_log(path: str, episodes: int = 3, seed: int = 0, compression: str = "none",
                           lengths: list[int] | None = None, info: bool = False, chunk_bytes: int = 1 << 20,
                           terminate_last: bool = True) -> Recorded:
    """Episodes of a continuous-control shape; episode e ends terminated when e is even, truncated when odd."""
    rng = np.random.default_rng(seed)
    lengths = lengths or [int(rng.integers(3, 9)) for _ in range(episodes)]
    rec = Recorded(path, steps={"agent": []}, lengths=lengths)
    with ReplayWriter(path, "Toy-v0", OBS_SPACE, ACT_SPACE, compression=compression, chunk_bytes=chunk_bytes,
                      info_keys=("x", "flag") if info else (), players={"kind": "bot", "name": "toy", "level": "easy"},
                      metadata={"purpose": "test"}) as w:
        for e, length in enumerate(lengths):
            w.begin_episode(seed=seed + e, metadata={"map": "lane"})
            for t in range(length):
                obs = rng.standard_normal(5).astype(np.float32)
                act = rng.uniform(-1, 1, 2).astype(np.float32)
                last = t == length - 1
                term, trunc = (last and e % 2 == 0 and terminate_last), (last and (e % 2 == 1 or not terminate_last))
                step_info = {"x": float(t), "flag": bool(t % 2), "ignored": "not kept"} if info and t % 2 else None
                reward = float(rng.standard_normal())
                w.add_step(obs, act, reward, term, trunc, step_info)
                kept = None if step_info is None else {"x": float(t), "flag": bool(t % 2)}
                rec.steps["agent"].append((e, obs, act, reward, term, trunc, kept))
            final = rng.standard_normal(5).astype(np.float32)
            w.end_episode(final, outcome="win" if e % 3 == 0 else None)
            rec.finals[(e, "agent")] = final
            rec.outcomes[(e, "agent")] = "win" if e % 3 == 0 else None
    return rec


def write_moba_log(path: str, episodes: int = 2, seed: int = 1, compression: str = "none") -> Recorded:
    """Two agents acting on one clock with masked dict observations and hierarchical actions."""
    rng = np.random.default_rng(seed)
    agents = ["blue", "red"]
    rec = Recorded(path, steps={a: [] for a in agents})
    with ReplayWriter(path, "moba-1v1-test", MASKED_OBS, MOBA_ACTION, agents=agents, compression=compression,
                      players={"blue": {"kind": "human", "name": "alice"},
                               "red": {"kind": "bot", "name": "bt", "level": "hard"}}) as w:
        for e in range(episodes):
            w.begin_episode(seed=e)
            length = int(rng.integers(4, 10))
            rec.lengths.append(length)
            for t in range(length):
                for agent in agents:
                    obs = {"observation": rng.uniform(-1, 1, 4).astype(np.float32),
                           "action_mask": rng.integers(0, 2, 6).astype(np.int8)}
                    act = np.array([rng.integers(3), rng.integers(2)], dtype=np.int64)
                    term = t == length - 1
                    w.add_step(obs, act, float(t), term, False, agent=agent)
                    rec.steps[agent].append((e, obs, act, float(t), term, False, None))
            finals = {a: {"observation": rng.uniform(-1, 1, 4).astype(np.float32),
                          "action_mask": np.ones(6, np.int8)} for a in agents}
            w.end_episode(finals, outcome={"blue": "win", "red": "loss"})
            for a in agents:
                rec.finals[(e, a)] = finals[a]
                rec.outcomes[(e, a)] = {"blue": "win", "red": "loss"}[a]
    return rec


@pytest.fixture
def single_log(tmp_path) -> Recorded:
    return write_single_agent_log(str(tmp_path / "single.aqlog"))


@pytest.fixture
def moba_log(tmp_path) -> Recorded:
    return write_moba_log(str(tmp_path / "moba.aqlog"))


def random_play(env_id: str, episodes: int, path: str) -> str:
    """`episodes` episodes of uniformly random actions in a gymnasium env, saved as a dataset file at `path`."""
    import gymnasium as gym

    from aql_agent.data import TransitionDataset, save_dataset
    from aql_agent.spaces import space_to_spec

    env = gym.make(env_id)
    rows: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                                             "terminals", "timeouts")}
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        env.action_space.seed(episode)
        done = False
        while not done:
            action = env.action_space.sample()
            next_obs, reward, terminated, truncated, _ = env.step(action)
            for key, value in zip(rows, (obs, action, reward, next_obs, terminated, truncated)):
                rows[key].append(value)
            obs, done = next_obs, terminated or truncated
    types = {"actions": np.int64 if isinstance(env.action_space, spaces.Discrete) else np.float32,
             "terminals": bool, "timeouts": bool}
    dataset = TransitionDataset(**{k: np.asarray(v, dtype=types.get(k, np.float32)) for k, v in rows.items()},
                                metadata={"observation_space": space_to_spec(env.observation_space),
                                          "action_space": space_to_spec(env.action_space)})
    save_dataset(dataset, path)
    return path


@pytest.fixture(scope="session")
def pendulum_data(tmp_path_factory) -> str:
    """Two random-action Pendulum-v1 episodes: actions live in [-2, 2], so scaling is exercised."""
    return random_play("Pendulum-v1", 2, str(tmp_path_factory.mktemp("data") / "pendulum-random.npz"))


@pytest.fixture(scope="session")
def connect_four_run(tmp_path_factory) -> str:
    """A tiny discrete AQL checkpoint of connect-four (20 updates on 10 recorded games)."""
    from aql_agent.cli import main

    folder = tmp_path_factory.mktemp("c4")
    logs, run = str(folder / "logs"), str(folder / "offline")
    assert main(["record", "--env", "connect-four", "--player", "greedy", "--opponent", "random", "--episodes", "10",
                 "--out", logs, "--no-progress"]) == 0
    assert main(["train", "--algo", "aql-discrete", "--data", logs, "--agent", "all", "--out", run, "--steps", "20",
                 "--no-progress", "--no-tensorboard", "--set", "hidden=[32,32]", "--set", "residual_hidden=[16]"]) == 0
    return run
