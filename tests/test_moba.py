"""moba-1v1: PettingZoo's own checks, the game's rules, the wrappers, the behaviour-tree bots."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import (api_test, max_cycles_test, parallel_api_test, parallel_seed_test, render_test,
                             seed_test)

from aql_agent.adapters import moba
from aql_agent.adapters.moba import game as g
from aql_agent.adapters.moba.bt import BehaviourTreeBot
from aql_agent.adapters.moba.env import FEATURE_INDEX, TARGET_BUILDING
from aql_agent.adapters.moba.game import Game, Unit
from aql_agent.adapters.moba.play import head_to_head, play_game, random_legal_policy
from aql_agent.adapters.games import game_kind, wilson_interval
from aql_agent.errors import AqlError

# -- PettingZoo's conformance suite --------------------------------------------------------------------------


def test_pettingzoo_api_tests_pass():
    api_test(moba.env(seed=0), num_cycles=300)
    parallel_api_test(moba.parallel_env(seed=0), num_cycles=300)
    parallel_api_test(moba.FlatActions(moba.parallel_env(seed=0)), num_cycles=300)
    logged = moba.ConcatenatedMasks(moba.parallel_env(seed=0))  # the form replay logs store
    obs, _ = logged.reset()
    assert all(logged.observation_space(a).contains(o) for a, o in obs.items())


def test_pettingzoo_seed_tests_pass():
    seed_test(moba.env, num_cycles=300)
    parallel_seed_test(moba.parallel_env, num_cycles=300)


def test_pettingzoo_max_cycles_test_passes():
    max_cycles_test(moba)


def test_pettingzoo_render_test_passes_headless():
    render_test(moba.env)  # human (SDL dummy driver), rgb_array and ansi
    env = moba.parallel_env(render_mode="rgb_array", seed=0)
    env.reset()
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 5  # a picture, not a blank


# -- rules ---------------------------------------------------------------------------------------------------


def minion(side: int, x: float, hp: float = 480.0) -> Unit:
    return Unit(side, "melee", x, 0.0, hp, 28.0, 1.5, g.FPS, uid=1000 + int(x * 10))


def test_crystal_can_be_hit_only_after_its_tower_falls_and_destroying_it_wins():
    game = Game(("ranger", "ranger"), seed=0)
    blue, red_tower, red_crystal = game.heroes[0], game.towers[1], game.crystals[1]
    blue.x = g.CRYSTAL_X[1] - 5.0
    red_crystal.hero_damage = 0.0  # let the hero stand under it
    game.set_command(0, g.ATTACK, 0, red_crystal)
    game.advance(60)
    assert red_crystal.hp == red_crystal.max_hp
    red_tower.hp = 1.0
    game._damage(blue, red_tower, 10.0)
    assert not red_tower.alive and red_crystal.vulnerable and blue.gold >= 250
    game.set_command(0, g.ATTACK, 0, red_crystal)
    game.advance(60)
    assert red_crystal.hp < red_crystal.max_hp
    red_crystal.hp = 1.0
    game.advance(30)
    assert game.winner == 0


def test_tower_prefers_minions_but_switches_to_a_hero_who_hits_its_hero():
    game = Game(("ranger", "ranger"), seed=0)
    blue, red, tower = game.heroes[0], game.heroes[1], game.towers[1]
    wave = minion(0, tower.x - 3.0, hp=1e9)
    game.minions[0].append(wave)
    blue.x, red.x = tower.x - 6.0, tower.x - 2.0  # both within the tower's range
    game.advance(2)
    assert tower.target is wave
    game.set_command(0, g.ATTACK, 0, red)
    hp_before = blue.hp
    game.advance(2 * g.FPS)
    assert tower.target is blue and blue.hp < hp_before


def test_last_hits_pay_gold_and_experience_levels_the_hero_up():
    game = Game(("ranger", "ranger"), seed=0)
    blue = game.heroes[0]
    weak = minion(1, blue.x + 3.0, hp=50.0)
    game.minions[1].append(weak)
    gold = blue.gold
    game.set_command(0, g.ATTACK, 0, weak)
    game.advance(3)
    assert blue.last_hits == 1 and blue.gold >= gold + 35 and blue.exp == 30
    max_hp = blue.max_hp
    game._give(blue, exp=150)
    assert blue.level == 2 and blue.max_hp > max_hp


def test_death_respawn_recall_and_heal():
    game = Game(("ranger", "ranger"), seed=0)
    blue, red = game.heroes
    blue.x = red.x = 50.0
    blue.hp = 1.0
    game._damage(red, blue, 5.0)
    assert not blue.alive and blue.deaths == 1 and red.kills == 1 and red.gold >= 220
    game.advance(blue.respawn_frames)
    assert blue.alive and blue.x == g.FOUNTAIN_X[0] and blue.hp == blue.max_hp

    red.hp = 0.5 * red.max_hp
    game.set_command(1, g.HEAL, 0, None)
    assert red.hp == pytest.approx(0.7 * red.max_hp) and red.heal_cooldown > 0
    game.set_command(1, g.RECALL, 0, None)
    game.advance(g.FPS)
    game._damage(blue, red, 1.0)  # a hit breaks the channel
    assert red.recall_frames == 0
    game.set_command(1, g.RECALL, 0, None)
    game.advance(g.RECALL_FRAMES + 1)
    assert red.x == g.FOUNTAIN_X[1]


def test_same_seed_same_game_other_seed_other_game():
    def frames(seed):
        env = moba.parallel_env()
        bots = {"blue": BehaviourTreeBot("hard", 0), "red": BehaviourTreeBot("easy", 1)}
        obs, _ = env.reset(seed=seed)
        out = []
        for _ in range(300):
            obs, *_ = env.step({a: bots[a](obs[a]) for a in env.agents})
            out.append(obs["blue"]["observation"])
        return np.stack(out)

    assert np.array_equal(frames(3), frames(3))
    assert not np.array_equal(frames(3), frames(4))
    seeded = moba.parallel_env(seed=3)
    seeded.reset()
    first = seeded.game.rng.random()
    seeded.reset()
    assert first == Game(("ranger", "ranger"), seed=3).rng.random()  # reset() plays the constructor's seed,
    assert seeded.game.rng.random() == Game(("ranger", "ranger"), seed=4).rng.random()  # then the next one


def test_views_are_mirrored_so_both_sides_see_their_base_at_zero():
    env = moba.parallel_env(seed=0)
    obs, _ = env.reset()
    assert np.array_equal(obs["blue"]["observation"], obs["red"]["observation"])
    forward = np.array([g.MOVE, 0, 0, 0])
    for _ in range(10):  # before the first wave
        obs, *_ = env.step({"blue": forward, "red": forward})
    blue, red = env.game.heroes
    assert blue.x > g.FOUNTAIN_X[0] + 5 and blue.x == pytest.approx(g.LANE_LENGTH - red.x)
    assert np.allclose(obs["blue"]["observation"], obs["red"]["observation"])


def test_rewards_are_the_weighted_terms_and_zero_sum():
    env = moba.parallel_env(seed=1)
    bots = {"blue": BehaviourTreeBot("hard", 0), "red": BehaviourTreeBot("medium", 1)}
    obs, _ = env.reset()
    nonzero = 0
    for _ in range(1500):
        obs, rewards, _, _, infos = env.step({a: bots[a](obs[a]) for a in env.agents})
        for agent in rewards:
            assert rewards[agent] == pytest.approx(sum(infos[agent]["reward_terms"].values()))
        assert rewards["blue"] == pytest.approx(-rewards["red"])
        nonzero += rewards["blue"] != 0
    assert nonzero > 100

    env = moba.parallel_env(seed=1, zero_sum=False, reward_weights={"gold": 1.0})
    obs, _ = env.reset()
    for _ in range(20):
        obs, rewards, *_ = env.step({"blue": np.zeros(4, int), "red": np.zeros(4, int)})
    assert rewards["blue"] >= 0 and rewards["red"] >= 0  # passive gold only, nothing subtracted


def test_the_winner_is_terminated_with_outcomes_in_info():
    env = moba.parallel_env(seed=0)
    obs, _ = env.reset()
    game = env.game
    blue, red_crystal = game.heroes[0], game.crystals[1]
    game.towers[1].alive, game.towers[1].hp, red_crystal.vulnerable, red_crystal.hp = False, 0.0, True, 1.0
    blue.x, red_crystal.hero_damage = g.CRYSTAL_X[1] - 4.0, 0.0
    obs, *_ = env.step({"blue": np.zeros(4, int), "red": np.zeros(4, int)})
    assert obs["blue"]["action_mask"][3][TARGET_BUILDING] == 1
    obs, rewards, terminations, truncations, infos = env.step(
        {"blue": np.array([g.ATTACK, 0, 0, TARGET_BUILDING]), "red": np.zeros(4, int)})
    assert terminations == {"blue": True, "red": True} and not any(truncations.values())
    assert infos["blue"]["outcome"] == "win" and infos["red"]["outcome"] == "loss"
    assert rewards["blue"] >= env.config.reward_weights["win"] and env.agents == []


def test_frame_cap_truncates_as_a_draw():
    env = moba.parallel_env(seed=0, max_frames=30, frame_skip=3)
    env.reset()
    steps = 0
    while env.agents:
        _, _, terminations, truncations, infos = env.step({a: np.zeros(4, int) for a in env.agents})
        steps += 1
    assert steps == 10 and all(truncations.values()) and not any(terminations.values())
    assert infos["red"]["outcome"] == "draw"


# -- actions and masks ---------------------------------------------------------------------------------------


def test_illegal_actions_are_counted_no_ops_and_malformed_ones_are_errors():
    env = moba.parallel_env(seed=0)
    obs, _ = env.reset()
    assert obs["blue"]["action_mask"][0][g.SKILL3] == 0  # the ultimate needs level 4
    x = env.game.heroes[0].x
    _, _, _, _, infos = env.step({"blue": np.array([g.SKILL3, 0, 0, 0]), "red": np.array([9, 0, 0, 0])})
    assert infos["blue"]["illegal_action"] and infos["blue"]["illegal_actions"] == 1
    assert infos["red"]["illegal_action"] and infos["red"]["illegal_actions"] == 1
    assert env.game.heroes[0].x == x
    with pytest.raises(AqlError, match="4 integers"):
        env.step({"blue": np.array([1, 2, 3]), "red": np.zeros(4, int)})


def test_masks_mark_exactly_the_actions_the_game_accepts():
    env = moba.parallel_env(seed=2)
    obs, _ = env.reset()
    rng = np.random.default_rng(0)
    for _ in range(400):
        actions = {}
        for agent in env.agents:
            head = [int(rng.integers(n)) for n in moba.ACTION_HEADS]
            actions[agent] = np.array(head)
        legal = {a: moba.flat_action_mask(obs[a]["action_mask"])[moba.flatten_action(actions[a])] for a in actions}
        obs, _, _, _, infos = env.step(actions)
        for agent in actions:
            assert infos[agent]["illegal_action"] == (not legal[agent])
        if not env.agents:
            obs, _ = env.reset()


def test_flat_actions_round_trip_and_random_legal_play_is_legal():
    for index, row in enumerate(moba.FLAT_ACTIONS):
        assert moba.flatten_action(row) == index
    env = moba.FlatActions(moba.parallel_env(seed=0))
    assert env.action_space("blue").n == len(moba.FLAT_ACTIONS) == 53
    obs, _ = env.reset()
    rng = np.random.default_rng(0)
    for _ in range(300):
        obs, _, _, _, infos = env.step({a: rng.choice(np.flatnonzero(obs[a]["action_mask"])) for a in env.agents})
    assert infos["blue"]["illegal_actions"] == infos["red"]["illegal_actions"] == 0
    raw, _ = moba.parallel_env(seed=0).reset()
    masks = moba.split_masks(moba.concatenate_masks(raw["blue"])["action_mask"])
    assert all(np.array_equal(a, b) for a, b in zip(masks, raw["blue"]["action_mask"]))


def test_bad_settings_are_clear_errors():
    with pytest.raises(AqlError, match="unknown hero 'wizard'"):
        moba.parallel_env(heroes=("wizard", "ranger"))
    with pytest.raises(AqlError, match="frame_skip must be a positive integer"):
        moba.parallel_env(frame_skip=0)
    with pytest.raises(AqlError, match="unknown reward terms"):
        moba.parallel_env(reward_weights={"style": 1.0})
    with pytest.raises(AqlError, match="unknown moba-1v1 settings"):
        moba.parallel_env(framerate=3)
    with pytest.raises(AqlError, match="render_mode"):
        moba.parallel_env(render_mode="video")
    with pytest.raises(AqlError, match="unknown bot level 'godlike'"):
        BehaviourTreeBot("godlike")
    with pytest.raises(AqlError, match="unknown player"):
        game_kind("moba-1v1").make_player("bot:hard")
    with pytest.raises(AqlError, match="cannot make environment 'moba-5v5'"):  # not a game: a gymnasium id
        game_kind("moba-5v5").learner_spaces()


# -- behaviour-tree bots -------------------------------------------------------------------------------------


def test_bot_plays_either_side_from_either_mask_layout():
    env = moba.parallel_env(seed=0)
    obs, _ = env.reset()
    bots = {"blue": BehaviourTreeBot("hard", seed=0), "red": BehaviourTreeBot("hard", seed=0)}
    twin = BehaviourTreeBot("hard", seed=0)  # sees red's masks concatenated, as in a replay log
    farthest = {"blue": 0.0, "red": 0.0}
    for _ in range(300):
        actions = {a: bots[a](obs[a]) for a in env.agents}
        assert np.array_equal(twin(moba.concatenate_masks(obs["red"])), actions["red"])
        obs, _, _, _, infos = env.step(actions)
        for agent in farthest:
            farthest[agent] = max(farthest[agent], obs[agent]["observation"][FEATURE_INDEX["own.x"]])
    assert infos["blue"]["illegal_actions"] == infos["red"]["illegal_actions"] == 0
    assert min(farthest.values()) > 0.2  # both walked out to the lane in their own view


def win_rate(strong: str, weak: str, games: int) -> float:
    def make(level):
        return (lambda seed: random_legal_policy(seed)) if level == "random" else (
            lambda seed: BehaviourTreeBot(level, seed=seed))

    return head_to_head(make(strong), make(weak), games)["win_rate"]


@pytest.mark.parametrize("strong,weak,games", [("hard", "medium-hard", 10), ("medium-hard", "medium", 10),
                                                ("medium", "easy", 20)])
def test_bot_levels_are_ordered(strong, weak, games):
    # benchmarks/moba_bots.py plays the full matrix (100 games a pair: hard beat medium 100 times, medium beat
    # easy 90); a few seeded games of each step down the ladder keep the suite quick, more where the gap is narrower
    assert win_rate(strong, weak, games=games) >= 0.7


def test_the_easiest_bot_beats_random_play():
    assert win_rate("easy", "random", games=10) >= 0.95


def test_bt_never_plays_illegal_actions_and_hero_uses_its_kit():
    env = moba.parallel_env(seed=5)
    bots = {"blue": BehaviourTreeBot("hard", 0), "red": BehaviourTreeBot("medium", 1)}
    result = play_game(env, bots, seed=5)
    assert result.illegal_actions == {"blue": 0, "red": 0}
    hero = env.game.heroes[0 if result.winner == "blue" else 1]
    assert hero.level > 4 and hero.last_hits > 10 and hero.kills + hero.last_hits > 0
    assert result.winner is not None


def test_the_wilson_interval_always_holds_the_win_rate():
    """At 0 or all wins rounding once put the bound a hair inside the rate (and a plot's error bar below 0)."""
    for games in range(1, 60):
        for wins in range(games + 1):
            low, high = wilson_interval(wins, games)
            assert 0.0 <= low <= wins / games <= high <= 1.0
    assert wilson_interval(6, 6)[1] == 1.0 and wilson_interval(0, 6)[0] == 0.0
    low, high = wilson_interval(5, 10)
    assert 0.2 < low < 0.3 and 0.7 < high < 0.8


def test_a_mixed_opponent_plays_each_player_on_both_sides_whatever_the_seed(tmp_path):
    """`mix:A,B` evaluations take one player per game by pairs of game seeds (each meets both sides); fine-tuning
    rounds share a side per round, so they take one player per pair of rounds. Choosing rounds' players by the
    games' seeds left it to the seed's parity (with seed 1 every round played A: a mix that never mixed)."""
    from types import SimpleNamespace

    from aql_agent.adapters.moba.kind import moba_player

    kind, policy = game_kind("moba-1v1"), SimpleNamespace(learner=SimpleNamespace(name="aql-discrete"))
    evaluation = [(moba_player("mix:bt:easy,random", seed + 100_000)[1].get("level", "random"), seed % 2)
                  for seed in range(10_000, 10_040)]
    assert sorted(set(evaluation)) == [("easy", 0), ("easy", 1), ("random", 0), ("random", 1)]
    assert [who for who, _ in evaluation].count("easy") == 20
    for seed in (0, 1, 2, 3):
        collector = kind.collector(str(tmp_path / f"logs{seed}"), seed, "mix:bt:easy,random", None)
        played = []

        def record_games(kind, policy, who, opponent, numbers, first_seed, side, out_dir):
            played.append((opponent, side))
            raise StopIteration

        collector.record_games = record_games
        for collector.rounds in range(8):
            with pytest.raises(StopIteration):
                collector.play(policy, 2)
        assert played == [("bt:easy", "blue"), ("bt:easy", "red"), ("random", "blue"), ("random", "red")] * 2
    bridge = kind.collector(str(tmp_path / "bridge"), 1, "mix:bt:easy,random", None, through_bridge=True, rounds=2)
    assert bridge.kind.round_opponent(bridge.opponent, bridge.rounds) == "random"
    assert bridge._engine_command("tcp://127.0.0.1:1", 2, 7, "random")[-2:] == ["--opponent", "random"]
    assert kind.round_opponent("bt:hard", 5) == "bt:hard" and kind.round_opponent(None, 1) is None
    with pytest.raises(AqlError, match="a mixed opponent is mix:SPEC,SPEC"):
        kind.round_opponent("mix:bt:easy", 0)
