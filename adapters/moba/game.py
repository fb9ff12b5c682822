"""The 1v1 lane MOBA's rules: heroes, minions, buildings, one frame at a time. No PettingZoo, no numpy.

Pure Python on purpose: a game holds a few dozen units, where per-call numpy overhead would cost more than
the arithmetic. The lane runs along x from the blue fountain (x = 0) to the red one (x = 100); y is the lane's
width. Side 0 is blue, side 1 is red. All randomness (minion spawn jitter, critical hits) comes from one
`random.Random` seeded at construction, so a seed fixes the whole game for fixed commands.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

FPS = 15  # frames per game second, as Honor of Kings' 66 ms frame
LANE_LENGTH = 100.0
LANE_HALF_WIDTH = 6.0
FOUNTAIN_X = (2.0, LANE_LENGTH - 2.0)
FOUNTAIN_RADIUS = 5.0
TOWER_X = (28.0, LANE_LENGTH - 28.0)
CRYSTAL_X = (7.0, LANE_LENGTH - 7.0)
VISION = 14.0  # a unit farther than this from a hero cannot be targeted by it
EXP_RADIUS = 12.0  # heroes this close to a dying enemy unit share its experience
LEVEL_EXP = (0, 150, 330, 540, 780, 1050, 1350, 1680, 2040, 2430, 2850, 3300, 3780, 4290, 4830)
MAX_LEVEL = len(LEVEL_EXP)
PASSIVE_GOLD_PER_SECOND = 2.0
WAVE_INTERVAL = 25 * FPS
FIRST_WAVE = 3 * FPS
RECALL_FRAMES = 4 * FPS
HEAL_FRACTION, HEAL_COOLDOWN = 0.2, 60 * FPS
CRIT_CHANCE, CRIT_MULTIPLIER = 0.1, 1.5
RESCAN = 3  # frames between target searches of an idle minion or building
AGGRESSION_MEMORY = FPS  # a tower remembers a hero who hit an enemy hero under it for this long

# commands (the action's button head)
NONE, MOVE, ATTACK, SKILL1, SKILL2, SKILL3, HEAL, RECALL = range(8)
BUTTONS = ("none", "move", "attack", "skill1", "skill2", "skill3", "heal", "recall")
DIRECTIONS = 16
DIRECTION_VECTORS = tuple((math.cos(2 * math.pi * i / DIRECTIONS), math.sin(2 * math.pi * i / DIRECTIONS))
                          for i in range(DIRECTIONS))


@dataclass(frozen=True)
class SkillSpec:
    """One skill. kind: 'nuke' (targeted damage), 'dash' (move `range` along a direction), 'area' (damage in
    `radius` around a targeted unit within `range`)."""

    name: str
    kind: str
    range: float
    damage: float
    damage_per_level: float
    radius: float
    mana: float
    cooldown_s: float
    min_level: int = 1


@dataclass(frozen=True)
class HeroSpec:
    """A hero's base stats; per-level growth and gold-bought items are added on top."""

    name: str
    hp: float
    hp_per_level: float
    mana: float
    mana_per_level: float
    mana_regen: float  # per second
    hp_regen: float  # per second
    attack: float
    attack_per_level: float
    attack_range: float
    attack_interval_s: float
    speed: float  # lane units per second
    skills: tuple[SkillSpec, SkillSpec, SkillSpec]


HEROES: dict[str, HeroSpec] = {
    "ranger": HeroSpec(
        "ranger", hp=2400, hp_per_level=180, mana=600, mana_per_level=40, mana_regen=6, hp_regen=4,
        attack=120, attack_per_level=10, attack_range=6.0, attack_interval_s=1.0, speed=4.0,
        skills=(SkillSpec("piercing arrow", "nuke", 9.0, 200, 30, 0.0, 60, 5.0),
                SkillSpec("tumble", "dash", 5.0, 0, 0, 0.0, 40, 8.0),
                SkillSpec("arrow rain", "area", 8.0, 450, 60, 3.5, 120, 40.0, min_level=4))),
    "bruiser": HeroSpec(
        "bruiser", hp=3200, hp_per_level=240, mana=450, mana_per_level=30, mana_regen=5, hp_regen=8,
        attack=140, attack_per_level=11, attack_range=2.0, attack_interval_s=1.1, speed=4.2,
        skills=(SkillSpec("chain hook", "nuke", 6.0, 180, 25, 0.0, 50, 6.0),
                SkillSpec("charge", "dash", 6.0, 0, 0, 0.0, 40, 9.0),
                SkillSpec("ground slam", "area", 5.0, 420, 55, 4.0, 110, 35.0, min_level=4))),
}

# gold buys items automatically: each gold earned adds this much attack and max hp
ITEM_ATTACK_PER_GOLD, ITEM_HP_PER_GOLD = 0.015, 0.12


class Unit:
    """Anything with hit points that can attack: minions and buildings (heroes extend it)."""

    __slots__ = ("side", "kind", "x", "y", "hp", "max_hp", "damage", "range", "interval", "cooldown",
                 "target", "alive", "killer", "uid")

    def __init__(self, side: int, kind: str, x: float, y: float, hp: float, damage: float, attack_range: float,
                 interval: int, uid: int):
        self.side, self.kind, self.x, self.y = side, kind, x, y
        self.hp = self.max_hp = hp
        self.damage, self.range, self.interval, self.cooldown = damage, attack_range, interval, 0
        self.target: Unit | None = None
        self.alive = True
        self.killer: Unit | None = None
        self.uid = uid


class Building(Unit):
    __slots__ = ("vulnerable", "hero_damage", "aggressor", "aggressor_frame")

    def __init__(self, side: int, kind: str, x: float, hp: float, hero_damage: float, minion_damage: float,
                 attack_range: float, uid: int):
        super().__init__(side, kind, x, 0.0, hp, minion_damage, attack_range, FPS, uid)
        self.hero_damage = hero_damage
        self.vulnerable = kind == "tower"
        self.aggressor: Hero | None = None
        self.aggressor_frame = -AGGRESSION_MEMORY


class Hero(Unit):
    __slots__ = ("spec", "mana", "max_mana", "level", "exp", "gold", "skill_cooldowns", "heal_cooldown",
                 "recall_frames", "respawn_frames", "command", "command_target", "direction", "last_hits",
                 "kills", "deaths", "illegal_actions", "speed_per_frame", "attack_interval")

    def __init__(self, side: int, spec: HeroSpec, uid: int):
        super().__init__(side, "hero", FOUNTAIN_X[side], 0.0, spec.hp, spec.attack, spec.attack_range,
                         round(spec.attack_interval_s * FPS), uid)
        self.spec = spec
        self.mana = self.max_mana = spec.mana
        self.level, self.exp, self.gold = 1, 0.0, 0.0
        self.skill_cooldowns = [0, 0, 0]
        self.heal_cooldown = 0
        self.recall_frames = 0  # frames left in a recall channel; 0 = not recalling
        self.respawn_frames = 0
        self.command, self.command_target, self.direction = NONE, None, 0
        self.last_hits = self.kills = self.deaths = self.illegal_actions = 0
        self.speed_per_frame = spec.speed / FPS
        self.attack_interval = self.interval

    def refresh_stats(self) -> None:
        """Recompute max hp/mana and attack from level and gold (items), keeping the hp and mana fractions."""
        spec, growth = self.spec, self.level - 1
        hp_frac, mana_frac = self.hp / self.max_hp, self.mana / self.max_mana
        self.max_hp = spec.hp + spec.hp_per_level * growth + ITEM_HP_PER_GOLD * self.gold
        self.max_mana = spec.mana + spec.mana_per_level * growth
        self.damage = spec.attack + spec.attack_per_level * growth + ITEM_ATTACK_PER_GOLD * self.gold
        if self.alive:
            self.hp, self.mana = hp_frac * self.max_hp, mana_frac * self.max_mana

    def skill_ready(self, index: int) -> bool:
        skill = self.spec.skills[index]
        return (self.alive and self.skill_cooldowns[index] == 0 and self.mana >= skill.mana
                and self.level >= skill.min_level)


MELEE = dict(hp=480.0, damage=28.0, range=1.5, interval=FPS, gold=35.0, exp=30.0)
RANGED = dict(hp=340.0, damage=42.0, range=5.0, interval=round(1.2 * FPS), gold=45.0, exp=40.0)
MINION_SPEED = 2.5 / FPS
MINION_AGGRO = 6.0
MINION_GROWTH_PER_WAVE = 0.02  # minions get 2% more hp and damage each wave
MINION_BUILDING_FACTOR = 0.5  # minions deal half damage to buildings


class Game:
    """One game: `set_command` per hero, then `advance(frames)`. `winner` is 0, 1 or None."""

    def __init__(self, heroes: tuple[str, str], seed: int | None = None):
        for name in heroes:
            if name not in HEROES:
                raise ValueError(f"unknown hero {name!r}; choose one of {sorted(HEROES)}")
        self.rng = random.Random(seed)
        self.frame = 0
        self.winner: int | None = None
        self._uid = 0
        self.heroes = (Hero(0, HEROES[heroes[0]], self._next_uid()), Hero(1, HEROES[heroes[1]], self._next_uid()))
        self.towers = tuple(Building(s, "tower", TOWER_X[s], 5000, 320, 170, 8.0, self._next_uid()) for s in (0, 1))
        self.crystals = tuple(Building(s, "crystal", CRYSTAL_X[s], 6000, 380, 200, 7.0, self._next_uid())
                              for s in (0, 1))
        self.minions: tuple[list[Unit], list[Unit]] = ([], [])
        self.minions_died = False  # set when a minion falls; its payout waits for the end of the frame
        self.waves = 0
        self.passive_gold_carry = 0.0

    def _next_uid(self) -> int:
        self._uid += 1
        return self._uid

    # -- commands --------------------------------------------------------------------------------------
    def set_command(self, side: int, button: int, direction: int, target: Unit | None) -> None:
        """What hero `side` does until the next command (the caller has checked legality)."""
        hero = self.heroes[side]
        if hero.recall_frames and button not in (NONE, RECALL):
            hero.recall_frames = 0
        if button == HEAL:
            hero.hp = min(hero.max_hp, hero.hp + HEAL_FRACTION * hero.max_hp)
            hero.heal_cooldown = HEAL_COOLDOWN
            button = NONE
        elif button == RECALL:
            if not hero.recall_frames:
                hero.recall_frames = RECALL_FRAMES
        elif button == SKILL2:
            self._dash(hero, direction)
            button = NONE
        hero.command, hero.direction, hero.command_target = button, direction, target

    def _dash(self, hero: Hero, direction: int) -> None:
        skill = hero.spec.skills[1]
        dx, dy = DIRECTION_VECTORS[direction]
        hero.x = min(LANE_LENGTH, max(0.0, hero.x + dx * skill.range))
        hero.y = min(LANE_HALF_WIDTH, max(-LANE_HALF_WIDTH, hero.y + dy * skill.range))
        hero.mana -= skill.mana
        hero.skill_cooldowns[1] = round(skill.cooldown_s * FPS)

    # -- the frame loop ------------------------------------------------------------------------------------
    def advance(self, frames: int) -> None:
        for _ in range(frames):
            if self.winner is not None:
                return
            self._frame()

    def _frame(self) -> None:
        self.frame += 1
        if self.frame >= FIRST_WAVE and (self.frame - FIRST_WAVE) % WAVE_INTERVAL == 0:
            self._spawn_wave()
        first = self.frame & 1  # alternate who acts first so neither side always lands the first hit
        self._hero_frame(self.heroes[first])
        self._hero_frame(self.heroes[1 - first])
        for side in (0, 1):
            for minion in self.minions[side]:
                if minion.alive:
                    self._minion_frame(minion)
        for side in (0, 1):
            self._building_frame(self.towers[side])
            self._building_frame(self.crystals[side])
        self._resolve_deaths()

    def _spawn_wave(self) -> None:
        growth = 1.0 + MINION_GROWTH_PER_WAVE * self.waves
        self.waves += 1
        for side in (0, 1):
            step = -1.2 if side == 0 else 1.2
            for i, stats in enumerate((MELEE, MELEE, MELEE, RANGED)):
                x = CRYSTAL_X[side] + step * i
                y = self.rng.uniform(-1.0, 1.0)
                minion = Unit(side, "ranged" if stats is RANGED else "melee", x, y, stats["hp"] * growth,
                              stats["damage"] * growth, stats["range"], stats["interval"], self._next_uid())
                self.minions[side].append(minion)

    # heroes
    def _hero_frame(self, hero: Hero) -> None:
        if not hero.alive:
            hero.respawn_frames -= 1
            if hero.respawn_frames <= 0:
                self._respawn(hero)
            return
        if hero.cooldown:
            hero.cooldown -= 1
        cds = hero.skill_cooldowns
        if cds[0]:
            cds[0] -= 1
        if cds[1]:
            cds[1] -= 1
        if cds[2]:
            cds[2] -= 1
        if hero.heal_cooldown:
            hero.heal_cooldown -= 1
        spec = hero.spec
        at_fountain = abs(hero.x - FOUNTAIN_X[hero.side]) < FOUNTAIN_RADIUS
        hp_regen = spec.hp_regen + (0.1 * hero.max_hp if at_fountain else 0.0)
        mana_regen = spec.mana_regen + (0.1 * hero.max_mana if at_fountain else 0.0)
        hero.hp = min(hero.max_hp, hero.hp + hp_regen / FPS)
        hero.mana = min(hero.max_mana, hero.mana + mana_regen / FPS)
        if abs(hero.x - FOUNTAIN_X[1 - hero.side]) < FOUNTAIN_RADIUS + 1.0:  # the enemy fountain burns
            self._damage(self.crystals[1 - hero.side], hero, 0.1 * hero.max_hp)

        command = hero.command
        if hero.recall_frames:
            hero.recall_frames -= 1
            if hero.recall_frames == 0:
                hero.x, hero.y = FOUNTAIN_X[hero.side], 0.0
                hero.command = NONE
            return
        if command == MOVE:
            dx, dy = DIRECTION_VECTORS[hero.direction]
            self._move(hero, dx, dy)
        elif command in (ATTACK, SKILL1, SKILL3):
            target = hero.command_target
            if target is None or not target.alive or (isinstance(target, Building) and not target.vulnerable):
                hero.command, hero.command_target = NONE, None
                return
            if command == ATTACK:
                reach = hero.range
            else:
                skill = spec.skills[0 if command == SKILL1 else 2]
                reach = skill.range
            dx, dy = target.x - hero.x, target.y - hero.y
            distance = math.sqrt(dx * dx + dy * dy)
            if distance > reach:
                self._move(hero, dx / distance, dy / distance)
            elif command == ATTACK:
                if hero.cooldown == 0:
                    hero.cooldown = hero.attack_interval
                    damage = hero.damage * (CRIT_MULTIPLIER if self.rng.random() < CRIT_CHANCE else 1.0)
                    self._damage(hero, target, damage)
            else:
                index = 0 if command == SKILL1 else 2
                if not hero.skill_ready(index):  # ran out of mana on the way: keep attacking instead
                    hero.command = ATTACK
                    return
                hero.mana -= skill.mana
                hero.skill_cooldowns[index] = round(skill.cooldown_s * FPS)
                damage = skill.damage + skill.damage_per_level * (hero.level - 1)
                if skill.kind == "area":
                    self._area_damage(hero, target.x, target.y, skill.radius, damage)
                else:
                    self._damage(hero, target, damage)
                hero.command = ATTACK

    def _move(self, hero: Hero, dx: float, dy: float) -> None:
        step = hero.speed_per_frame
        x, y = hero.x + dx * step, hero.y + dy * step
        hero.x = 0.0 if x < 0.0 else LANE_LENGTH if x > LANE_LENGTH else x
        hero.y = -LANE_HALF_WIDTH if y < -LANE_HALF_WIDTH else LANE_HALF_WIDTH if y > LANE_HALF_WIDTH else y

    def _area_damage(self, hero: Hero, x: float, y: float, radius: float, damage: float) -> None:
        enemy = 1 - hero.side
        r2 = radius * radius
        for minion in self.minions[enemy]:
            if minion.alive and (minion.x - x) ** 2 + (minion.y - y) ** 2 <= r2:
                self._damage(hero, minion, damage)
        other = self.heroes[enemy]
        if other.alive and (other.x - x) ** 2 + (other.y - y) ** 2 <= r2:
            self._damage(hero, other, damage)

    def _respawn(self, hero: Hero) -> None:
        hero.alive = True
        hero.x, hero.y = FOUNTAIN_X[hero.side], 0.0
        hero.hp, hero.mana = hero.max_hp, hero.max_mana
        hero.command, hero.command_target, hero.recall_frames = NONE, None, 0

    # minions
    def _minion_frame(self, minion: Unit) -> None:
        if minion.cooldown:
            minion.cooldown -= 1
        target = minion.target
        if target is None or not target.alive or not -MINION_AGGRO <= target.x - minion.x <= MINION_AGGRO:
            # a minion with nothing to fight looks again every RESCAN frames (0.2 s): walking is the common case
            target = minion.target = self._minion_target(minion) if (self.frame + minion.uid) % RESCAN == 0 else None
        if target is None:
            minion.x += MINION_SPEED if minion.side == 0 else -MINION_SPEED
            return
        dx, dy = target.x - minion.x, target.y - minion.y
        distance = math.sqrt(dx * dx + dy * dy)
        if distance > minion.range:
            minion.x += dx / distance * MINION_SPEED
            minion.y += dy / distance * MINION_SPEED
        elif minion.cooldown == 0:
            minion.cooldown = minion.interval
            damage = minion.damage * (MINION_BUILDING_FACTOR if isinstance(target, Building) else 1.0)
            self._damage(minion, target, damage)

    def _minion_target(self, minion: Unit) -> Unit | None:
        """The nearest enemy minion in aggro range, else the enemy hero in aggro range, else a building."""
        enemy = 1 - minion.side
        x = minion.x
        best, best_distance = None, MINION_AGGRO
        for other in self.minions[enemy]:
            if other.alive:
                distance = abs(other.x - x)
                if distance < best_distance:
                    best, best_distance = other, distance
        if best is not None:
            return best
        hero = self.heroes[enemy]
        if hero.alive and abs(hero.x - x) < MINION_AGGRO and abs(hero.y - minion.y) < MINION_AGGRO:
            return hero
        for building in (self.towers[enemy], self.crystals[enemy]):
            if building.alive and building.vulnerable and abs(building.x - x) < MINION_AGGRO:
                return building
        return None

    # buildings
    def _building_frame(self, building: Building) -> None:
        if not building.alive:
            return
        if building.cooldown:
            building.cooldown -= 1
            return
        target = self._building_target(building)
        building.target = target
        if target is None:
            building.cooldown = RESCAN - 1
        else:
            building.cooldown = building.interval
            self._damage(building, target, building.hero_damage if target.kind == "hero" else building.damage)

    def _building_target(self, building: Building) -> Unit | None:
        """Keep the current target in range, except that a hero who hit our hero under us is shot first."""
        enemy = 1 - building.side
        reach = building.range
        hero = self.heroes[enemy]
        hero_in_range = hero.alive and abs(hero.x - building.x) <= reach and abs(hero.y) <= reach
        if hero_in_range and building.aggressor is hero and self.frame - building.aggressor_frame < AGGRESSION_MEMORY:
            return hero
        current = building.target
        if current is not None and current.alive and abs(current.x - building.x) <= reach:
            return current
        best, best_distance = None, reach
        for minion in self.minions[enemy]:
            if minion.alive:
                distance = abs(minion.x - building.x)
                if distance <= best_distance:
                    best, best_distance = minion, distance
        if best is not None:
            return best
        return hero if hero_in_range else None

    # damage, deaths, rewards
    def _damage(self, attacker: Unit, target: Unit, amount: float) -> None:
        if not target.alive:
            return
        if target.kind == "hero":
            if target.recall_frames:
                target.recall_frames = 0
            if attacker.kind == "hero":  # our tower defends its hero
                for building in (self.towers[target.side], self.crystals[target.side]):
                    if building.alive and abs(attacker.x - building.x) <= building.range:
                        building.aggressor, building.aggressor_frame = attacker, self.frame
        elif isinstance(target, Building) and not target.vulnerable:
            return
        target.hp -= amount
        if target.hp <= 0.0:
            target.hp = 0.0
            target.alive = False
            target.killer = attacker
            if target.kind == "hero":
                self._hero_died(target)
            elif isinstance(target, Building):
                self._building_died(target)
            else:
                self.minions_died = True

    def _resolve_deaths(self) -> None:
        """Pay out for minions that died this frame (heroes and buildings pay out the moment they fall)."""
        if self.minions_died:
            self.minions_died = False
            for minions in self.minions:
                for minion in minions:
                    if not minion.alive:
                        self._minion_died(minion)
                minions[:] = [m for m in minions if m.alive]
        self.passive_gold_carry += PASSIVE_GOLD_PER_SECOND / FPS
        if self.passive_gold_carry >= 1.0:
            for hero in self.heroes:
                self._give(hero, gold=1.0)
            self.passive_gold_carry -= 1.0

    def _minion_died(self, minion: Unit) -> None:
        stats = RANGED if minion.kind == "ranged" else MELEE
        enemy_hero = self.heroes[1 - minion.side]
        if minion.killer is enemy_hero:
            enemy_hero.last_hits += 1
            self._give(enemy_hero, gold=stats["gold"])
        if enemy_hero.alive and abs(enemy_hero.x - minion.x) <= EXP_RADIUS:
            self._give(enemy_hero, exp=stats["exp"])
        minion.killer = None

    def _hero_died(self, hero: Hero) -> None:
        hero.deaths += 1
        hero.respawn_frames = round((3.0 + 1.5 * hero.level) * FPS)
        hero.recall_frames, hero.command, hero.command_target = 0, NONE, None
        enemy = self.heroes[1 - hero.side]
        if hero.killer is enemy:
            enemy.kills += 1
        if hero.killer is enemy or abs(enemy.x - hero.x) <= EXP_RADIUS:  # a tower's kill still pays a nearby enemy
            self._give(enemy, gold=200.0 + 20.0 * hero.level, exp=120.0 + 30.0 * hero.level)
        hero.killer = None

    def _building_died(self, building: Building) -> None:
        building.killer = None
        enemy = self.heroes[1 - building.side]
        self._give(enemy, gold=250.0 if building.kind == "tower" else 0.0, exp=150.0)
        if building.kind == "tower":
            self.crystals[building.side].vulnerable = True
        else:
            self.winner = 1 - building.side

    def _give(self, hero: Hero, gold: float = 0.0, exp: float = 0.0) -> None:
        hero.gold += gold
        if exp:
            hero.exp += exp
            while hero.level < MAX_LEVEL and hero.exp >= LEVEL_EXP[hero.level]:
                hero.level += 1
        hero.refresh_stats()
