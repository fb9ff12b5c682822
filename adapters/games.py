"""Game kinds: the one place a game plugs into the SDK.

A game kind answers everything `aql train / eval / record / finetune / deploy / engine` ask of an environment:
the spaces a learner sees, the players there are (bots, `random`, `human`, `agent:CHECKPOINT`), how a game or
episode is played and scored, how it is recorded into a replay log, how a round of online play is collected
for fine-tuning, and how it runs as an external engine over the ZeroMQ bridge. Orchestration code asks
`game_kind(name)` and never compares names.

    kind = game_kind("connect-four")
    kind.learner_spaces()                    # (Box(84,), Discrete(7)): what a discrete learner trains on
    kind.evaluate(policy, 20, seed=0, opponent="greedy")   # win rate with a 95% interval

Names: a registered game (`registered_games()`: moba-1v1, connect-four, and whatever `register_game` added),
`pettingzoo:MODULE` for any PettingZoo env module with Discrete/MultiDiscrete actions and `action_mask`
observations (e.g. `pettingzoo:pettingzoo.classic.tictactoe_v3`), and otherwise a gymnasium id.
docs/games.md walks through adding your own.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gymnasium import spaces

from aql_agent.errors import AqlError, Terminated

if TYPE_CHECKING:
    from aql_agent.adapters.bridge import EngineClient, EnvSpec
    from aql_agent.checkpoint import Policy as CheckpointPolicy
    from aql_agent.data import TransitionDataset

#: A player: one observation in the game's own form in, one action out (bots, agents, random).
Player = Callable[[Any], Any]

#: The game `aql record`, `aql engine` and the demo use when no --env is given.
DEFAULT_GAME = "moba-1v1"


def reseeded_each_episode(spec: Any) -> bool:
    """Bots and random players of a recording are made afresh for each episode with that episode's seed, so
    episode i depends only on `seed + i` and any split of the episodes over workers records the same games;
    agents (deterministic) and humans are made once."""
    return isinstance(spec, str) and spec.partition(":")[0] not in ("agent", "human")


class StopRecording(Exception):
    """A human asked to stop (Esc, a closed window, `q`): the log keeps every episode played so far."""


class KeepWhatWasPlayed:
    """Around a recording loop: the log is closed whole when play ends, and also when a human stops it
    (`StopRecording`, swallowed) or presses Ctrl-C or the process gets SIGTERM (re-raised once the log is
    closed): `end_open_episode(how)` closes the episode in progress first. Any other error aborts the log
    (kept as `.partial`)."""

    def __init__(self, writer: Any, end_open_episode: Callable[[str], None]):
        self.writer, self.end_open_episode = writer, end_open_episode

    def __enter__(self) -> KeepWhatWasPlayed:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> bool:
        if kind is None:
            self.writer.close()
            return False
        if issubclass(kind, (StopRecording, KeyboardInterrupt)):
            if self.writer.episode_open:
                self.end_open_episode("sigterm" if issubclass(kind, Terminated) else
                                      "ctrl-c" if issubclass(kind, KeyboardInterrupt) else "quit")
            self.writer.close()
            print(f"stopped: {self.writer.episodes} episodes, {self.writer.steps} steps kept in {self.writer.path}")
            return issubclass(kind, StopRecording)
        self.writer.abort()
        return False


@dataclasses.dataclass
class Round:
    """What one round of online play produced: its transitions (raw env units) and how it went."""

    data: TransitionDataset
    summary: dict[str, float]


class GameKind:
    """What the SDK needs from a kind of environment. Subclasses: `GymKind` (adapters/gym.py), `MobaKind`
    (adapters/moba/kind.py), `PettingZooKind` (adapters/pettingzoo_games.py)."""

    name: str
    #: games between players scored by outcome (win rate), rather than episodes scored by return
    multi_agent: bool = False
    #: the agents of a multi-agent game (sides alternate among them)
    agents: tuple[str, ...] = ("agent",)
    #: who evaluations, recordings and the engine play against when no opponent is named
    default_opponent: str | None = None

    # -- what learners see --------------------------------------------------------------------------------
    def learner_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        """(observation space, action space) as learners see them: a flat Box, and a Box or a Discrete."""
        raise NotImplementedError

    def learner_view(self, dataset: TransitionDataset) -> TransitionDataset:
        """A dataset of this game (as its logs hold it) in the learner's view; the identity by default."""
        return dataset

    def check_policy(self, policy: CheckpointPolicy, where: str) -> None:
        """Refuse a checkpoint whose learner does not fit the learner's view of this game."""
        from aql_agent.learners import ALGORITHMS

        obs_space, act_space = self.learner_spaces()
        discrete = isinstance(act_space, spaces.Discrete)
        if policy.discrete != discrete:
            fitting = ", ".join(name for name, (learner, _) in ALGORITHMS.items() if learner.discrete == discrete)
            raise AqlError(f"{where} holds a {'discrete' if policy.discrete else 'continuous'}-action "
                           f"{policy.info.get('algo')!r} learner; {self.name} takes a "
                           f"{'discrete' if discrete else 'continuous'} one ({fitting})")
        actions = int(act_space.n) if discrete else act_space.shape[0]
        if (policy.obs_dim, policy.act_dim) != (obs_space.shape[0], actions):
            raise AqlError(f"{where} takes {policy.obs_dim} observation features and {policy.act_dim} actions; "
                           f"{self.name} gives {obs_space.shape[0]} and {actions}: train on this game's data")

    def protected_actions(self) -> tuple[int, ...]:
        """Learner-view actions that exploration must never draw at random (a discrete learner's
        `exploration_exclude` while fine-tuning): ones whose random use throws a game. None by default."""
        return ()

    # -- players ------------------------------------------------------------------------------------------
    def make_player(self, spec: str, seed: int | None = None) -> tuple[Player, dict[str, Any]]:
        """A player from a spec (`random`, `agent:CHECKPOINT`, the game's bots) and the description a replay
        log stores for it. `human` is recorded by `record`, not made here."""
        raise NotImplementedError

    def view_player(self, spec: str, seed: int | None = None) -> Player:
        """A player on the learner's view (observation features and a flat mask in, action index out): what
        `aql deploy --policy` serves for a bot."""
        raise AqlError(f"{self.name} has no bots to serve; serve agent:CHECKPOINT or random")

    def player_from_view(self, policy: Player) -> Player:
        """A policy on the learner's view as a player of the game itself; the identity by default."""
        return policy

    # -- playing ------------------------------------------------------------------------------------------
    def play_games(self, policy: Player, games: Sequence[int], seed: int = 0, opponent: str | None = None,
                   progress: bool = False) -> list[dict[str, Any]]:
        """Play the games numbered `games` (0, 1, ... of an evaluation seeded with `seed`) with a policy on the
        learner's view; one plain result per game. Game i must depend only on `seed + i` (its environment seed,
        its side, the opponent's seed), so any split of the numbers over workers plays the same games."""
        raise NotImplementedError

    def summarise_games(self, results: list[dict[str, Any]], opponent: str | None = None) -> dict[str, Any]:
        """What `evaluate` reports for the results of `play_games`, in game order."""
        raise NotImplementedError

    def evaluate(self, policy: Player, episodes: int, seed: int = 0, opponent: str | None = None,
                 progress: bool = False) -> dict[str, Any]:
        """Score a policy on the learner's view over seeded episodes (games, sides alternating)."""
        if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
            raise AqlError(f"games must be at least 1, got {episodes!r}")
        self.check_opponent(opponent)  # once, before the first game
        return self.summarise_games(self.play_games(policy, range(episodes), seed, opponent, progress), opponent)

    def record(self, out_dir: str, player: str | tuple[Player, dict[str, Any]], opponent: str | None = None, *,
               episodes: int = 1, seed: int = 0, side: str | None = None, options: Mapping[str, Any] | None = None,
               compression: str = "none", overwrite: bool = False, progress: bool = True) -> str:
        """Record `episodes` episodes (games) of `player` into a replay log in `out_dir`; returns its path.
        `player` is a spec or a (player, description) pair; `options` are the kind's own (heroes, fps)."""
        raise NotImplementedError

    def collector(self, logs: str, seed: int, opponent: str | None, exploration: float | None,
                  through_bridge: bool = False, rounds: int = 0, envs: int = 1) -> Any:
        """What plays the rounds of online fine-tuning: `play(policy, budget) -> Round`, the budget in steps
        (single-agent) or games (multi-agent); `envs`: how many envs share a round (gymnasium envs; through the
        bridge, engine processes playing a round's games at once)."""
        self.check_rounds(through_bridge, envs)
        if through_bridge:
            return BridgeRounds(self, opponent, logs, seed, rounds, engines=envs)
        return RecordedRounds(self, opponent, logs, seed, rounds)

    def round_opponent(self, opponent: str | None, round_number: int) -> str | None:
        """Who fine-tuning round `round_number` plays: `opponent` itself, unless the kind mixes several
        (moba-1v1's `mix:`), where each round plays one of them in turn."""
        return opponent

    def check_rounds(self, through_bridge: bool, envs: int) -> None:
        """Refuse a way of playing fine-tuning rounds this game does not have, before any work starts."""
        if envs > 1 and not through_bridge:
            raise AqlError(f"--envs splits a gymnasium env's round over several envs; {self.name}'s rounds are "
                           "--round-games games (use --workers to spread them, or --through-bridge --envs N for N "
                           "engine processes on this machine)")

    # -- the bridge ---------------------------------------------------------------------------------------
    def bridge_spec(self) -> EnvSpec:
        """What this game's engine declares in its hello."""
        from aql_agent.adapters.bridge import EnvSpec

        obs_space, act_space = self.learner_spaces()
        if isinstance(act_space, spaces.Discrete):
            return EnvSpec(self.name, obs_space.shape, "float32", actions=int(act_space.n),
                           action_mask=self.multi_agent, agents=self.agents)
        return EnvSpec(self.name, obs_space.shape, "float32", action_shape=act_space.shape, agents=self.agents)

    def play_over_bridge(self, client: EngineClient, games: int, opponent: str | None, side: str, seed: int,
                         progress: bool = True) -> dict[str, Any]:
        """Run this game as an external engine: the connected agent plays one side (`alternate` or an agent),
        `opponent` the others; returns the agent's results (`summarise_games` of `bridge_games`)."""
        self.check_side(side)
        self.check_opponent(opponent)
        return self.bridge_report(self.bridge_games(client, range(games), opponent, side, seed, progress), opponent,
                                  side)

    def bridge_report(self, results: list[dict[str, Any]], opponent: str | None, side: str) -> dict[str, Any]:
        """`summarise_games` of the results of `bridge_games`, with the agent's side (multi-agent games)."""
        report = self.summarise_games(results, opponent)
        return {**report, "side": side} if self.multi_agent else report

    def bridge_games(self, client: EngineClient, games: Sequence[int], opponent: str | None, side: str, seed: int,
                     progress: bool = False) -> list[dict[str, Any]]:
        """Play games `games` as an external engine for the connected agent, one result per game in the form
        `play_games` gives (so `summarise_games` reports them): game i from `seed + i`, the agent on `side` or,
        alternating, on agent i mod the number of agents; any split of the numbers over engines (`aql engine
        --workers N`) plays the same games."""
        raise NotImplementedError

    def check_opponent(self, opponent: str | None, flag: str = "--opponent") -> None:
        """Refuse an opponent this game cannot field before any work starts (it is made once to check it);
        `flag` names it in the error."""
        if opponent is None:
            return
        if not self.multi_agent:
            raise AqlError(f"{self.name} is single-agent: it takes no {flag} (got {opponent!r})")
        self.make_player(opponent, 0)

    def check_side(self, side: str | None) -> None:
        if side is not None and side != "alternate" and side not in self.agents:
            raise AqlError(f"{self.name}'s sides are {list(self.agents)} (or alternate), not {side!r}")

    def check_options(self, options: Mapping[str, Any] | None, known: tuple[str, ...] = ()) -> dict[str, Any]:
        given = {k: v for k, v in (options or {}).items() if v is not None}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise AqlError(f"{self.name} takes no {', '.join('--' + k.replace('_', '-') for k in unknown)}")
        return given


# -- rounds of online play (fine-tuning) ----------------------------------------------------------------------


class RecordedRounds:
    """Games against `opponent`, each round recorded into a replay log under `logs` (sides alternate).

    `record_games` plays a round's games: `record_exploring_games` here, one after another;
    `aql_agent.distributed.RoundsOnRay` puts it on Ray workers (`aql finetune --workers N`) and records the
    same games."""

    def __init__(self, kind: GameKind, opponent: str | None, logs: str, seed: int, rounds: int = 0):
        self.kind, self.opponent, self.logs, self.seed, self.rounds = kind, opponent, logs, seed, rounds
        self.record_games: Callable[..., list[str]] = record_exploring_games

    @property
    def side(self) -> str:
        return self.kind.agents[self.rounds % len(self.kind.agents)]

    def play(self, policy: CheckpointPolicy, games: int) -> Round:
        from aql_agent.data import TransitionDataset
        from aql_agent.replay import join_logs

        side = self.side
        who = {"kind": "agent", "name": policy.learner.name, "fine_tuning_round": self.rounds}
        folder = os.path.join(self.logs, f"round-{self.rounds:04d}")
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".games-", dir=folder) as scratch:
            parts = self.record_games(self.kind, policy, who, self.kind.round_opponent(self.opponent, self.rounds),
                                      range(games), self.seed + 1000 * self.rounds, side, scratch)
            path = join_logs(parts, os.path.join(folder, os.path.basename(parts[0])), overwrite=True)
        self.rounds += 1
        outcomes = log_outcomes(path, side)
        data = self.kind.learner_view(TransitionDataset.from_log(path, agent=side))
        return Round(data, {"games": games, "win_rate": outcomes.count("win") / games})


def record_exploring_games(kind: GameKind, policy: CheckpointPolicy, who: Mapping[str, Any], opponent: str | None,
                           numbers: Sequence[int], seed: int, side: str, out_dir: str) -> list[str]:
    """Record games `numbers` of a fine-tuning round, one log each, `policy` exploring (non-deterministic) on
    `side`: game i is seeded with `seed + i`, the policy's random draws too, so game i depends only on `seed + i`
    and any split of the games over workers records the same games. Returns the logs in game order."""
    import torch

    player = kind.player_from_view(lambda view: policy.act(view, deterministic=False))
    paths = []
    for number in numbers:
        with torch.random.fork_rng(devices=[]):  # the learner's own random stream goes on untouched
            torch.manual_seed(seed + number)
            paths.append(kind.record(os.path.join(out_dir, f"game-{number:05d}"), (player, dict(who)), opponent,
                                     episodes=1, seed=seed + number, side=side, overwrite=True, progress=False))
    return paths


class BridgeRounds(RecordedRounds):
    """Games served over the ZeroMQ bridge (`AgentServer`, as `aql deploy --record` does) to `aql engine`
    processes of the same game: the path of a team whose game runs in its own engine.

    A round's games go to `engines` engine processes in consecutive parts, all playing against this process's
    one agent server at once; `launch` starts them (`EngineProcesses`: here, `aql finetune --through-bridge
    --envs N`; `distributed.EnginesOnRay`: on Ray workers, `--workers N`). Each game explores with a random
    stream of its own (`ServedPolicy(seeded_streams=True)`) and the sessions' logs are joined in game order, so
    any number of engines records the round one engine records."""

    def __init__(self, kind: GameKind, opponent: str | None, logs: str, seed: int, rounds: int = 0,
                 engines: int = 1):
        super().__init__(kind, opponent, logs, seed, rounds)
        self.engines = engines
        self.launch: Callable[[list[list[str]]], Any] = EngineProcesses

    def play(self, policy: CheckpointPolicy, games: int) -> Round:
        from aql_agent.adapters.bridge import AgentServer, ServedPolicy
        from aql_agent.data.formats import load_dataset
        from aql_agent.replay import ReplayReader, join_logs

        folder = os.path.join(self.logs, f"round-{self.rounds:04d}")
        os.makedirs(folder, exist_ok=True)
        served = ServedPolicy(policy, {"name": policy.learner.name, "fine_tuning_round": self.rounds},
                              deterministic=False, seeded_streams=True)
        seed = self.seed + 1000 * self.rounds
        with tempfile.TemporaryDirectory(prefix=".sessions-", dir=folder) as sessions:
            server = AgentServer(served, "tcp://127.0.0.1:*", record_dir=sessions, log=None,
                                 max_sessions=max(64, self.engines))
            opponent = self.kind.round_opponent(self.opponent, self.rounds)
            engines = self.launch([self._engine_command(server.endpoint, part.stop - part.start, seed + part.start,
                                                        opponent) for part in consecutive_parts(games, self.engines)])
            try:
                server.serve(until=engines.finished, poll_ms=20)  # returns closed: every log finalised
            except BaseException:
                engines.stop()
                raise
            reports = engines.reports(f"fine-tuning round {self.rounds}")
            logs = sorted(glob.glob(os.path.join(sessions, "*.aqlog")),
                          key=lambda path: next(ReplayReader(path).episodes()).metadata["engine_episode"])
            join_logs(logs, os.path.join(folder, os.path.basename(logs[0])), overwrite=True)
            with open(os.path.join(sessions, "games.jsonl")) as source:  # each game's outcome, in game order
                games_played = sorted(source, key=lambda line: json.loads(line)["episode"])
            with open(os.path.join(folder, "games.jsonl"), "w") as target:
                target.writelines(games_played)
        self.rounds += 1
        data = self.kind.learner_view(load_dataset(folder, agent="all"))
        return Round(data, {"games": games, "win_rate": sum(report["wins"] for report in reports) / games})

    def _engine_command(self, endpoint: str, games: int, seed: int, opponent: str | None) -> list[str]:
        return [sys.executable, "-m", "aql_agent", "engine", "--env", self.kind.name, "--connect", endpoint,
                "--games", str(games), "--seed", str(seed), "--side", self.side, "--no-progress"] + (
                    ["--opponent", opponent] if opponent else [])


def consecutive_parts(count: int, workers: int) -> list[range]:
    """Items 0..count-1 as at most `workers` consecutive, near-equal parts (one per worker or engine), in order."""
    parts = min(workers, count)
    bounds = [round(i * count / parts) for i in range(parts + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts)]


class EngineProcesses:
    """`aql engine` processes started on this machine, one per command; `finished` once all have exited."""

    def __init__(self, commands: list[list[str]]):
        self.errors = [tempfile.TemporaryFile("w+") for _ in commands]
        self.processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
                          for command, errors in zip(commands, self.errors)]

    def finished(self) -> bool:
        return all(process.poll() is not None for process in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()

    def reports(self, what: str) -> list[dict[str, Any]]:
        """Each engine's JSON report, in command order; an engine that failed is one error naming `what`."""
        reports = []
        for process, errors in zip(self.processes, self.errors):
            output = process.stdout.read()
            process.stdout.close()
            errors.seek(0)
            failure = errors.read()[-2000:]
            errors.close()
            if process.returncode != 0:
                raise AqlError(f"aql engine failed in {what}: {failure}")
            reports.append(json.loads(output))
        return reports


def log_outcomes(path: str, agent: str) -> list[str | None]:
    """Each episode's outcome for `agent` in a replay log."""
    from aql_agent.replay import ReplayReader

    return [episode.outcomes.get(agent) for episode in ReplayReader(path).columns().episodes]


# -- scoring and file names shared by the kinds -------------------------------------------------------------


def wilson_interval(wins: int, games: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a win rate (95% by default): sound at 0 and 1 and for few games."""
    if games == 0:
        return 0.0, 1.0
    rate = wins / games
    centre = (rate + z * z / (2 * games)) / (1 + z * z / games)
    half = z * math.sqrt(rate * (1 - rate) / games + z * z / (4 * games * games)) / (1 + z * z / games)
    # at 0 or N wins the exact bound is the rate itself; rounding must not leave the rate outside
    return min(rate, max(0.0, centre - half)), max(rate, min(1.0, centre + half))


def outcome_counts(outcomes: list[str | None]) -> dict[str, Any]:
    """Wins, losses, draws and the win rate with its 95% interval, from per-game outcomes."""
    wins, losses = outcomes.count("win"), outcomes.count("loss")
    return win_record(wins, losses, len(outcomes) - wins - losses)


def win_record(wins: int, losses: int, draws: int) -> dict[str, Any]:
    """Wins, losses, draws and the win rate with its 95% interval, from the counts (e.g. several engines' added)."""
    games = wins + losses + draws
    low, high = wilson_interval(wins, games)
    return {"games": games, "wins": wins, "losses": losses, "draws": draws,
            "win_rate": wins / games if games else 0.0, "win_rate_ci95": [low, high]}


def log_path(out_dir: str, game: str, player: str, opponent: str | None, seed: int, overwrite: bool) -> str:
    """Where `aql record` writes: OUT/GAME-PLAYER[-vs-OPPONENT]-seedN.aqlog (refusing to replace one silently)."""
    def slug(spec: str) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "-", os.path.basename(spec.rstrip("/")) if spec.startswith("agent:")
                      else spec).strip("-")

    os.makedirs(out_dir, exist_ok=True)
    name = f"{slug(game)}-{slug(player)}" + (f"-vs-{slug(opponent)}" if opponent else "") + f"-seed{seed}.aqlog"
    path = os.path.join(out_dir, name)
    if os.path.exists(path) and not overwrite:
        raise AqlError(f"{path} exists; pass --overwrite to replace it or choose another --out or --seed")
    return path


def agent_player(spec: str) -> tuple[CheckpointPolicy, dict[str, Any]]:
    """`agent:CHECKPOINT`: the trained policy and the description a replay log stores for it."""
    from aql_agent.checkpoint import load_policy

    path = spec.partition(":")[2]
    if not path or not os.path.exists(path):
        raise AqlError(f"no checkpoint at {path!r} (give a checkpoint or run folder written by aql train)")
    policy = load_policy(path)
    return policy, {"kind": "agent", "name": policy.info["algo"], "checkpoint": os.path.abspath(path),
                    "step": policy.info["step"]}


# -- the registry ---------------------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., GameKind]] = {}


def register_game(name: str, factory: Callable[..., GameKind]) -> None:
    """Make `name` a game every command takes (`--env NAME`); `factory(**settings)` builds its kind."""
    if not name or ":" in name:
        raise ValueError(f"a game name is a non-empty string without ':', got {name!r}")
    _REGISTRY[name] = factory


def registered_games() -> list[str]:
    return list(_REGISTRY)


def game_kind(name: str, settings: Mapping[str, Any] | None = None) -> GameKind:
    """The kind behind an env name: a registered game, `pettingzoo:MODULE`, or a gymnasium id."""
    if not isinstance(name, str) or not name:
        raise AqlError(f"an env name is a non-empty string, got {name!r}")
    settings = dict(settings or {})
    if name in _REGISTRY:
        return _REGISTRY[name](**settings)
    if name.startswith("pettingzoo:"):
        from aql_agent.adapters.pettingzoo_games import PettingZooKind

        return PettingZooKind.from_module(name, settings)
    from aql_agent.adapters.gym import GymKind

    return GymKind(name, settings)


def _moba(**settings: Any) -> GameKind:
    from aql_agent.adapters.moba.kind import MobaKind

    return MobaKind(settings)


def _connect_four(**settings: Any) -> GameKind:
    from aql_agent.adapters.connect_four import connect_four_kind

    return connect_four_kind(settings)


register_game(DEFAULT_GAME, _moba)
register_game("connect-four", _connect_four)
