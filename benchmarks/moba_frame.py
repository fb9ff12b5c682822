"""Render one moba-1v1 frame (hard bot vs medium bot, seed 3, after 280 s of play) to docs/moba-frame.png,
and its `ansi` rendering to docs/moba-frame.txt.

    python benchmarks/moba_frame.py
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt

from aql_agent.adapters import moba
from aql_agent.adapters.moba import render
from aql_agent.adapters.moba.bt import BehaviourTreeBot

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def main(steps: int = 1400) -> None:
    env = moba.parallel_env(render_mode="rgb_array", seed=3)
    observations, _ = env.reset()
    bots = {"blue": BehaviourTreeBot("hard", seed=0), "red": BehaviourTreeBot("medium", seed=1)}
    for _ in range(steps):
        observations, *_ = env.step({agent: bots[agent](observations[agent]) for agent in env.agents})
    frame = env.render()
    plt.imsave(os.path.join(DOCS, "moba-frame.png"), frame.repeat(2, axis=0).repeat(2, axis=1))
    with open(os.path.join(DOCS, "moba-frame.txt"), "w") as f:
        f.write(render.ansi(env.game) + "\n")
    print(render.ansi(env.game))


if __name__ == "__main__":
    main()
