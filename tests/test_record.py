"""tools/record: bots and humans into replay logs that read back, and stopping early keeps what was played."""

from __future__ import annotations

import _thread
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from aql_agent.adapters.moba import game as g
from aql_agent.adapters.moba.env import FEATURE_INDEX
from aql_agent.adapters.moba.keyboard import KeyboardPlayer
from aql_agent.cli import main
from aql_agent.errors import AqlError
from aql_agent.data import TransitionDataset
from aql_agent.adapters.games import game_kind
from aql_agent.replay import ReplayReader

pygame = pytest.importorskip("pygame")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def key(kind: int, name: int):
    return pygame.event.Event(kind, key=name)


def scripted(batches: list[list]) -> callable:
    """An event source that hands out one batch per call, then nothing (like a keyboard left alone)."""
    queue = list(batches)
    return lambda: queue.pop(0) if queue else []


def read_steps(path: str) -> dict[str, list]:
    steps: dict[str, list] = {}
    for step in ReplayReader(path).steps():
        steps.setdefault(step.agent, []).append(step)
    return steps


def test_bot_games_are_recorded_with_both_sides_and_who_played_them(tmp_path):
    path = game_kind("moba-1v1", {"max_frames": 900}).record(str(tmp_path), "bt:hard", "bt:easy", episodes=2, seed=3,
                                                             progress=False)
    reader = ReplayReader(path)
    episodes = list(reader.episodes())
    players = reader.header.players
    assert players["blue"] == {"kind": "bot", "name": "bt", "level": "hard", "hero": "ranger"}
    assert players["red"]["level"] == "easy"
    assert len(episodes) == 2 and all(len(e.agents["blue"].rewards) == 300 for e in episodes)
    assert {e.agents[a].outcome for e in episodes for a in ("blue", "red")} == {"draw"}  # 900 frames: the cap here
    data = TransitionDataset.from_log(path, agent="red")
    assert data.observations.shape == (600, 130) and data.action_masks.shape == (600, 46)
    assert data.actions.shape == (600, 4) and data.timeouts.sum() == 2


def test_a_mixed_opponent_s_games_each_name_who_played_them(tmp_path):
    """The header names one player per side; against `mix:A,B` the opponent changes from game to game, so each
    episode's start record names the player it had (nothing about who played is left to guess)."""
    from aql_agent.adapters.moba.kind import moba_player

    path = game_kind("moba-1v1", {"max_frames": 90}).record(str(tmp_path), "random", "mix:bt:easy,random",
                                                            episodes=4, seed=0, progress=False)
    episodes = list(ReplayReader(path).episodes())
    named = [e.metadata["players"]["red"] for e in episodes]
    expected = [moba_player("mix:bt:easy,random", seed)[1] for seed in range(7919, 7923)]
    assert [who.get("level", who["kind"]) for who in named] == [who.get("level", who["kind"]) for who in expected]
    assert {who.get("level", who["kind"]) for who in named} == {"easy", "random"}
    assert all(who["mix"] == "mix:bt:easy,random" and who["hero"] == "ranger" for who in named)
    plain = game_kind("moba-1v1", {"max_frames": 90}).record(str(tmp_path / "plain"), "random", "bt:easy",
                                                             episodes=1, seed=0, progress=False)
    assert "players" not in next(ReplayReader(plain).episodes()).metadata


def test_human_play_from_injected_key_events_through_the_dummy_video_driver(tmp_path):
    right, attack = pygame.K_d, pygame.K_SPACE
    events = scripted([[key(pygame.KEYDOWN, right)], *[[]] * 20,
                       [key(pygame.KEYDOWN, pygame.K_3)],  # the ultimate is not ready at level 1: ignored
                       [key(pygame.KEYUP, right), key(pygame.KEYDOWN, attack)], *[[]] * 5,
                       [pygame.event.Event(pygame.QUIT)]])
    path = game_kind("moba-1v1").record(str(tmp_path), "human", "bt:easy", options={"fps": 0, "events": events},
                                        progress=False)
    steps = read_steps(path)["blue"]
    assert len(steps) == 28  # every step played before the window closed
    actions = np.stack([s.action for s in steps])
    assert (actions[:21, 0] == g.MOVE).all() and (actions[:21, 1] == 0).all()  # D = right = toward red
    assert actions[21, 0] == g.MOVE  # "3" was refused, the hero kept walking
    assert not (actions[22:, 0] == g.MOVE).any()  # attack held, nothing in reach: the hero stops
    x = [s.observation["observation"][FEATURE_INDEX["own.x"]] for s in steps]
    assert x[21] > x[0] + 0.05 and x[-1] == pytest.approx(x[23])
    reader = ReplayReader(path)
    assert reader.header.players["blue"]["kind"] == "human"
    assert [e.end_metadata.get("stopped") for e in reader.episodes()] == ["quit"]


def test_ctrl_c_during_human_play_keeps_every_finished_step(tmp_path):
    pygame.display.init()
    pygame.event.post(key(pygame.KEYDOWN, pygame.K_RIGHT))  # through pygame's own queue this time
    timer = threading.Timer(1.0, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            game_kind("moba-1v1").record(str(tmp_path), "human", "bt:medium", options={"fps": 0}, progress=False)
    finally:
        timer.cancel()
    (log,) = tmp_path.iterdir()
    steps = read_steps(str(log))
    assert len(steps["blue"]) == len(steps["red"]) > 10
    assert steps["blue"][5].action[0] == g.MOVE
    reader = ReplayReader(str(log))
    assert [e.end_metadata["stopped"] for e in reader.episodes()] == ["ctrl-c"] and reader.finalised


def test_keyboard_maps_keys_in_each_side_s_own_view():
    blue = KeyboardPlayer(0, events=scripted([[key(pygame.KEYDOWN, pygame.K_d), key(pygame.KEYDOWN, pygame.K_w)]]))
    red = KeyboardPlayer(1, events=scripted([[key(pygame.KEYDOWN, pygame.K_d)]]))
    masks = (np.ones(8, np.int8), np.ones(16, np.int8), np.ones(16, np.int8), np.zeros(6, np.int8))
    observation = {"observation": np.zeros(130, np.float32), "action_mask": masks}
    assert blue(observation).tolist() == [g.MOVE, 2, 0, 0]  # up-right: 45 degrees
    assert red(observation).tolist() == [g.MOVE, 8, 0, 0]  # right on screen is back toward red's base


def test_mujoco_episodes_are_recorded(tmp_path):
    pytest.importorskip("mujoco")
    path = game_kind("Hopper-v5").record(str(tmp_path), "random", episodes=2, seed=0, progress=False)
    data = TransitionDataset.from_log(path)
    assert data.observations.shape[1] == 11 and (data.terminals | data.timeouts).sum() == 2


def test_cli_records_and_rejects_bad_players(tmp_path, capsys):
    assert main(["record", "--player", "bt:easy", "--opponent", "random", "--out", str(tmp_path), "--no-progress",
                 "--set", "max_frames=300"]) == 0
    assert "episodes:           1" in capsys.readouterr().out
    assert main(["record", "--player", "bt:legendary", "--out", str(tmp_path)]) == 2
    assert "unknown bot level 'legendary'" in capsys.readouterr().err
    assert main(["record", "--player", "bt:easy", "--opponent", "human", "--out", str(tmp_path)]) == 2
    assert "--opponent must be" in capsys.readouterr().err
    assert main(["record", "--player", "agent:/nonexistent", "--out", str(tmp_path)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["record", "--player", "bt:easy", "--hero", "wizard", "--out", str(tmp_path)]) == 2
    assert "unknown hero 'wizard'" in capsys.readouterr().err
    assert main(["record", "--player", "bt:easy", "--opponent", "random", "--out", str(tmp_path), "--no-progress",
                 "--set", "max_frames=300"]) == 2
    assert "exists" in capsys.readouterr().err


def test_tools_record_runs_from_a_checkout(tmp_path):
    result = subprocess.run([os.path.join(REPO, "tools", "record"), "--player", "bt:hard", "--opponent", "bt:easy",
                             "--out", str(tmp_path), "--set", "max_frames=150", "--no-progress"],
                            capture_output=True, text=True, env={**os.environ, "PATH": os.path.dirname(sys.executable)
                                                                 + os.pathsep + os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    assert "moba-1v1-bt-hard-vs-bt-easy-seed0.aqlog" in result.stdout


def test_a_checkpoint_plays_and_is_recorded_as_an_agent(tmp_path):
    from aql_agent.checkpoint import Preprocessing, save_checkpoint
    from aql_agent.learners import make_learner

    checkpoint = save_checkpoint(tmp_path / "bc", make_learner("bc", 3, 1, {"hidden": [8]}),
                                 Preprocessing((0.0,) * 3, (1.0,) * 3, (-2.0,), (2.0,)), step=0)
    path = game_kind("Pendulum-v1").record(str(tmp_path / "logs"), f"agent:{checkpoint}", episodes=1, progress=False)
    reader = ReplayReader(path)
    assert reader.header.players["agent"]["kind"] == "agent" and reader.header.players["agent"]["name"] == "bc"
    assert len(list(reader.steps())) == 200
    with pytest.raises(AqlError, match="continuous-action 'bc' learner; moba-1v1 takes a discrete one"):
        game_kind("moba-1v1").record(str(tmp_path / "logs"), f"agent:{checkpoint}", "bt:easy", progress=False)


def test_sigterm_keeps_the_game_in_progress_like_ctrl_c(tmp_path):
    """Service and container managers stop programs with SIGTERM: the log must keep what was played.

    A game lasts about two seconds, so the signal can land between two games, when none is in progress (then
    every game kept is a finished one): the recording is stopped again, later in its game, until one lands
    inside a game."""
    import signal
    import time

    for attempt, delay in enumerate((1.0, 1.4, 0.6)):
        out = tmp_path / f"logs{attempt}"
        recorder = subprocess.Popen([sys.executable, "-m", "aql_agent", "record", "--env", "moba-1v1", "--player",
                                     "bt:medium", "--episodes", "100", "--out", str(out), "--no-progress"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not (out.exists() and any(out.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(delay)  # some frames into the first game
        recorder.send_signal(signal.SIGTERM)
        stdout, stderr = recorder.communicate(timeout=60)
        assert recorder.returncode == 128 + signal.SIGTERM, stderr
        assert stderr.strip() == "aql: terminated (SIGTERM); what was finished is kept"
        (log,) = out.iterdir()
        assert log.suffix == ".aqlog"  # finished and renamed, not left as .partial
        reader = ReplayReader(str(log))
        episodes = list(reader.episodes())
        assert reader.finalised and episodes and "kept in" in stdout
        assert all("stopped" not in episode.end_metadata for episode in episodes[:-1])
        if episodes[-1].end_metadata.get("stopped") == "sigterm":
            assert len(read_steps(str(log))["blue"]) > 0
            return
        # landed between two games: every game kept was played to its end
        assert all(episode.complete and episode.agents["blue"].outcome is not None for episode in episodes)
    pytest.fail("three SIGTERMs all landed between games")
