"""Game kinds: a second game (PettingZoo's connect_four_v3) through the same commands as moba-1v1, any PettingZoo
env with masks (Parallel or AEC, Discrete or MultiDiscrete), and the registry's refusals."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv

from aql_agent.adapters.bridge import AgentServer, make_bridge_policy
from aql_agent.adapters.games import game_kind, register_game, registered_games
from aql_agent.adapters.pettingzoo_games import PettingZooKind
from aql_agent.cli import main
from aql_agent.data import TransitionDataset
from aql_agent.errors import AqlError
from aql_agent.replay import ReplayReader

TINY = ["--no-progress", "--no-tensorboard", "--set", "hidden=[64, 64]"]


@pytest.fixture(scope="module")
def greedy_logs(tmp_path_factory) -> str:
    """60 games of the scripted bot against itself, recorded by `aql record`."""
    out = str(tmp_path_factory.mktemp("c4-logs"))
    assert main(["record", "--env", "connect-four", "--player", "greedy", "--opponent", "greedy", "--episodes", "60",
                 "--out", out, "--no-progress"]) == 0
    return out


def serve(policy) -> tuple[AgentServer, threading.Thread]:
    server = AgentServer(policy, "tcp://127.0.0.1:*", log=None)
    thread = threading.Thread(target=server.serve, kwargs={"poll_ms": 10}, daemon=True)
    thread.start()
    return server, thread


def test_connect_four_is_a_registered_game_with_a_flat_learner_view(greedy_logs):
    kind = game_kind("connect-four")
    assert "connect-four" in registered_games() and kind.multi_agent
    assert kind.learner_spaces() == (spaces.Box(-np.inf, np.inf, (84,), np.float32), spaces.Discrete(7))
    (log,) = os.listdir(greedy_logs)
    reader = ReplayReader(os.path.join(greedy_logs, log))
    assert reader.header.env_id == "connect-four" and reader.header.players["player_1"]["name"] == "greedy"
    raw = TransitionDataset.from_log(os.path.join(greedy_logs, log), agent="all")
    flat = kind.learner_view(raw)
    assert flat.observations.shape == (len(raw), 84) and flat.action_masks.shape == (len(raw), 7)
    assert flat.action_masks[np.arange(len(flat)), flat.actions].all()  # every logged move was legal
    outcomes = [e.outcomes for e in reader.columns().episodes]
    assert all(set(o.values()) in ({"win", "loss"}, {"draw"}) for o in outcomes)
    first = TransitionDataset.from_log(os.path.join(greedy_logs, log), agent="player_0")
    assert sum(o["player_0"] == "win" for o in outcomes) == int((first.rewards > 0).sum())  # a win: one +1 row


def test_the_scripted_bot_beats_random_and_the_win_rate_orders_them():
    kind = game_kind("connect-four")
    rng = np.random.default_rng(0)

    def uniform(view):
        return int(rng.choice(np.flatnonzero(view["action_mask"])))

    against_greedy = kind.evaluate(uniform, 40, seed=0, opponent="greedy")
    against_random = kind.evaluate(uniform, 40, seed=0, opponent="random")
    assert against_greedy["win_rate"] < 0.15 < 0.3 < against_random["win_rate"]
    assert against_greedy["illegal_actions_per_game"] == 0


def test_record_train_eval_deploy_and_engine_for_connect_four(greedy_logs, tmp_path, capsys):
    run = str(tmp_path / "bc")
    assert main(["train", "--algo", "bc-discrete", "--data", greedy_logs, "--agent", "all", "--env", "connect-four",
                 "--opponent", "random", "--steps", "600", "--eval-every", "600", "--eval-episodes", "20",
                 "--out", run, *TINY]) == 0
    trained = json.loads(capsys.readouterr().out)["evaluation"]
    assert trained["win_rate"] >= 0.8  # imitating the bot beats random play (random vs random: about 0.5)

    assert main(["eval", "--checkpoint", run, "--env", "connect-four", "--games", "6", "--opponent", "greedy",
                 "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["games"] == 6 and result["opponent"] == "greedy" and result["algo"] == "bc-discrete"

    assert main(["record", "--env", "connect-four", "--player", f"agent:{run}", "--opponent", "random", "--episodes",
                 "2", "--side", "player_1", "--out", str(tmp_path / "agent-logs"), "--no-progress"]) == 0
    (log,) = os.listdir(tmp_path / "agent-logs")
    assert ReplayReader(str(tmp_path / "agent-logs" / log)).header.players["player_1"]["name"] == "bc-discrete"
    capsys.readouterr()

    server, thread = serve(make_bridge_policy(f"agent:{run}"))
    try:
        assert main(["engine", "--env", "connect-four", "--connect", server.endpoint, "--games", "4", "--opponent",
                     "random", "--no-progress"]) == 0
    finally:
        server.stop()
        thread.join(5)
    report = json.loads(capsys.readouterr().out)
    assert report["env"] == "connect-four" and report["games"] == 4 and report["bridge"]["fallbacks"] == 0
    assert report["agent"]["name"] == "bc-discrete" and report["wins"] >= 2


def test_the_bot_is_served_over_the_bridge_for_the_game_the_engine_declares(capsys):
    server, thread = serve(make_bridge_policy("greedy"))
    try:
        assert main(["engine", "--env", "connect-four", "--connect", server.endpoint, "--games", "4", "--opponent",
                     "random", "--no-progress"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["agent"] == {"name": "greedy"} and report["wins"] >= 3
        assert main(["engine", "--connect", server.endpoint, "--games", "1", "--no-progress"]) == 2  # moba-1v1
        assert "greedy cannot play 'moba-1v1'" in capsys.readouterr().err
    finally:
        server.stop()
        thread.join(5)
    with pytest.raises(AqlError, match="no registered game has a player 'bt:godlike'"):
        make_bridge_policy("bt:godlike")


def test_fine_tuning_plays_rounds_of_connect_four_in_process_and_through_the_bridge(greedy_logs, tmp_path, capsys):
    run = str(tmp_path / "aql")
    assert main(["train", "--algo", "aql-discrete", "--data", greedy_logs, "--agent", "all", "--out", run,
                 "--steps", "50", "--log-every", "25", *TINY]) == 0
    for name, extra in (("tuned", []), ("bridged", ["--through-bridge"])):
        capsys.readouterr()
        assert main(["finetune", "--checkpoint", run, "--env", "connect-four", "--opponent", "random", "--out",
                     str(tmp_path / name), "--steps", "20", "--round-games", "2", "--updates-per-step", "0.5",
                     "--eval-every", "1000", "--eval-episodes", "2", "--no-progress", "--no-tensorboard",
                     *extra]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["env_steps"] >= 20 and summary["drawn"]["online"] > 0
        rounds = os.listdir(tmp_path / name / "online")
        assert rounds and all(r.startswith("round-") for r in rounds)


def test_fine_tuning_through_two_local_engines_records_what_one_engine_records(greedy_logs, tmp_path, capsys):
    """`--through-bridge --envs 2`: two `aql engine` processes share each round's games against one agent
    server, and the run is the one a single engine gives (each game has its own seeded stream)."""
    import pandas as pd

    run = str(tmp_path / "aql")
    assert main(["train", "--algo", "aql-discrete", "--data", greedy_logs, "--agent", "all", "--out", run,
                 "--steps", "50", "--log-every", "25", *TINY]) == 0
    flags = ["finetune", "--checkpoint", run, "--env", "connect-four", "--opponent", "random", "--steps", "20",
             "--round-games", "3", "--exploration", "0.3", "--eval-every", "1000", "--eval-episodes", "2",
             "--seed", "5", "--log-every", "10", "--no-progress", "--no-tensorboard"]
    assert main([*flags, "--out", str(tmp_path / "one"), "--through-bridge"]) == 0
    assert main([*flags, "--out", str(tmp_path / "two"), "--through-bridge", "--envs", "2"]) == 0
    for table in ("rounds.csv", "metrics.csv", "eval.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "two" / table), pd.read_csv(tmp_path / "one" / table))
    for round_ in sorted(os.listdir(tmp_path / "two" / "online")):
        games = [json.loads(line) for line in (tmp_path / "two" / "online" / round_ / "games.jsonl").open()]
        assert len({g["session"] for g in games}) == 2  # two engines played them
    capsys.readouterr()
    assert main([*flags, "--out", str(tmp_path / "three"), "--envs", "2"]) == 2  # in process: one game at a time
    assert "--through-bridge --envs N for N engine processes" in capsys.readouterr().err


def test_a_human_plays_connect_four_at_the_terminal_and_quitting_keeps_finished_games(tmp_path):
    answers = iter(["3", "9", "x", "3", "3", "q"])  # 9 and x are refused and asked again
    prompts = []

    def read(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    path = game_kind("connect-four").record(str(tmp_path), "human", "random", episodes=2, options={"read": read},
                                            progress=False)
    assert "0 1 2 3 4 5 6" in prompts[0] and "your move [0, 1, 2, 3, 4, 5, 6]" in prompts[0]
    reader = ReplayReader(path)
    episodes = list(reader.episodes())
    assert reader.finalised and reader.header.players["player_0"]["kind"] == "human"
    assert [e.end_metadata.get("stopped") for e in episodes] == ["quit"]
    assert [int(a) for a in episodes[0].agents["player_0"].actions] == [3, 3, 3]


class ToyAuction(ParallelEnv):
    """Two bidders at once for 3 rounds: a MultiDiscrete (2, 3) bid with a per-head mask; the larger bid scores."""

    metadata = {"name": "toy_auction_v0"}

    def __init__(self, render_mode=None):
        self.possible_agents = ["a", "b"]
        self._observation = spaces.Dict({"observation": spaces.Box(0, 3, (2,), np.float32),
                                         "action_mask": spaces.MultiBinary(5)})
        self._action = spaces.MultiDiscrete([2, 3])

    def observation_space(self, agent):
        return self._observation

    def action_space(self, agent):
        return self._action

    def _observe(self):
        mask = np.array([1, 1, 1, 1, int(self.round < 2)], np.int8)  # bid 2 only in the first rounds
        return {a: {"observation": np.array([self.round, 0], np.float32), "action_mask": mask} for a in self.agents}

    def reset(self, seed=None, options=None):
        self.agents, self.round = list(self.possible_agents), 0
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions):
        score = {a: int(actions[a][0]) + int(actions[a][1]) for a in self.agents}
        rewards = {a: float(score[a] > score[b]) for a, b in (("a", "b"), ("b", "a"))}
        self.round += 1
        done = self.round == 3
        observations = self._observe()
        flags = {a: done for a in self.agents}
        if done:
            self.agents = []
        return observations, rewards, flags, {a: False for a in flags}, {a: {} for a in flags}


def test_any_pettingzoo_env_with_masks_plugs_in_parallel_and_multidiscrete(tmp_path):
    kind = PettingZooKind("toy-auction", ToyAuction)
    assert kind.learner_spaces()[1] == spaces.Discrete(6) and kind.per_head_mask
    mask = kind.flat_mask(np.array([1, 1, 1, 1, 0]))
    np.testing.assert_array_equal(mask, [1, 1, 0, 1, 1, 0])  # (head0, head1) pairs, head1 = 2 forbidden
    np.testing.assert_array_equal(kind.game_mask(mask), [1, 1, 1, 1, 0])
    path = kind.record(str(tmp_path), "random", "random", episodes=3, progress=False)
    data = kind.learner_view(TransitionDataset.from_log(path, agent="all"))
    assert len(data) == 18 and data.actions.max() < 6 and data.action_masks[np.arange(18), data.actions].all()
    assert set(data.actions[2::3]) <= {0, 1, 3, 4}  # no bid of 2 in the last round: masks were honoured
    assert kind.evaluate(lambda view: 5 if view["action_mask"][5] else 4, 4, opponent="random")["win_rate"] >= 0.5


def test_the_registry_takes_user_games_and_pettingzoo_modules_and_refuses_bad_ones(tmp_path):
    register_game("toy-auction", lambda **settings: PettingZooKind("toy-auction", ToyAuction, settings))
    assert game_kind("toy-auction").agents == ("a", "b")
    tictactoe = game_kind("pettingzoo:pettingzoo.classic.tictactoe_v3")
    assert tictactoe.learner_spaces()[1] == spaces.Discrete(9)
    with pytest.raises(AqlError, match="cannot import 'no_such_game'"):
        game_kind("pettingzoo:no_such_game")
    with pytest.raises(AqlError, match="unknown connect-four player 'bt:hard'"):
        game_kind("connect-four").make_player("bt:hard")
    with pytest.raises(AqlError, match="sides are"):
        game_kind("connect-four").record(str(tmp_path), "random", side="blue")
    with pytest.raises(AqlError, match="takes no --hero"):
        game_kind("connect-four").record(str(tmp_path), "random", options={"hero": "ranger"})
    with pytest.raises(AqlError, match="needs Dict\\(observation, action_mask\\)"):
        game_kind("pettingzoo:pettingzoo.classic.rps_v2")


def test_a_gymnasium_env_runs_as_an_external_engine_and_its_episodes_are_recorded(tmp_path, capsys):
    from aql_agent.data.formats import load_dataset

    server = AgentServer(make_bridge_policy("random"), "tcp://127.0.0.1:*", log=None, record_dir=str(tmp_path))
    thread = threading.Thread(target=server.serve, kwargs={"poll_ms": 10}, daemon=True)
    thread.start()
    try:
        assert main(["engine", "--env", "Pendulum-v1", "--connect", server.endpoint, "--games", "2",
                     "--no-progress"]) == 0
    finally:
        server.stop()
        thread.join(5)
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 2 and report["bridge"]["fallbacks"] == 0
    data = load_dataset(str(tmp_path), agent="all")  # the one-agent log keeps every step and final observation
    assert data.observations.shape == (400, 3) and data.actions.shape == (400, 1) and data.timeouts.sum() == 2


def test_a_served_bot_keeps_one_player_per_stream_when_episodes_never_end(tmp_path):
    from aql_agent.adapters.bridge import EngineClient

    policy = make_bridge_policy("greedy")
    server, thread = serve(policy)
    try:
        client = EngineClient(server.endpoint, game_kind("connect-four").bridge_spec(), timeout_s=2.0)
        client.connect()
        for episode in range(50):  # every episode abandoned after one decision, no `end`
            client.act("player_0", episode, 0, np.zeros(84, np.float32), np.ones(7, np.uint8))
        assert len(policy.players) == 1
        client.close()
    finally:
        server.stop()
        thread.join(5)
    assert not policy.players  # bye (and shutdown) let go of the rest
