"""benchmarks/table1.py: a 2 x 2 x 1 grid runs in seconds and writes a well-formed table, JSON and plots."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from aql_agent.adapters.gym import make_env, random_policy, record_episodes
from aql_agent.data import convert

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_small_grid_writes_table_json_and_plots(tmp_path):
    datasets = []
    for name, seed in (("pendulum-a", 0), ("pendulum-b", 1)):
        env = make_env("Pendulum-v1", seed=seed)
        log = str(tmp_path / f"{name}.aqlog")
        record_episodes(env, random_policy(env), log, episodes=2, seed=seed, progress=False)
        convert(log, tmp_path / f"{name}.npz")
        datasets.append(str(tmp_path / f"{name}.npz"))
    out = str(tmp_path / "table")
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "table1.py"), "--algos", "bc", "bcq",
               "--datasets", *datasets, "--env", "Pendulum-v1", "--seeds", "0", "--steps", "20",
               "--eval-every", "10", "--eval-episodes", "1", "--log-every", "10", "--jobs", "2",
               "--set", "bcq:hidden=[16]", "--runs", str(tmp_path / "runs"), "--records", str(tmp_path / "records"),
               "--out", out]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with open(out + ".json") as f:
        results = json.load(f)["results"]
    assert set(results) == {"pendulum-a", "pendulum-b"}
    for entry in results.values():
        assert set(entry["algos"]) == {"bc", "bcq"}
        for algo in entry["algos"].values():
            assert [step for step, _ in algo["seeds"]["0"]["curve"]] == [10, 20]
            assert algo["gen_mse_mean"] > 0
    table = open(out + ".md").read()
    assert "| pendulum-a |" in table and "| dataset | bc | bcq |" in table and "**" in table
    assert os.path.getsize(out + "-curves.png") > 1000 and os.path.getsize(out + "-figure1.png") > 1000
    record = json.load(open(tmp_path / "records" / "20u" / "pendulum-a" / "bcq" / "seed0.json"))
    assert record["set"] == ["hidden=[16]"] and [s for s, _ in record["curve"]] == [10, 20]
    assert {"gen_mse", "q_mean", "critic_loss"} <= set(record["diagnostics"])

    # A later sitting, with the scratch run folders gone: the records alone rebuild the same table, and
    # recorded runs are not trained again.
    import shutil
    shutil.rmtree(tmp_path / "runs")
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count(": recorded") == 4
    assert not (tmp_path / "runs").exists()
    with open(out + ".json") as f:
        assert json.load(f)["results"] == results

    # A partial grid: a missing run shows as "-", a cell with fewer seeds than asked says how many.
    os.remove(tmp_path / "records" / "20u" / "pendulum-b" / "bc" / "seed0.json")
    partial = subprocess.run(command[:command.index("--seeds")] + ["--seeds", "0", "1", "--summary-only"]
                             + command[command.index("--steps"):], capture_output=True, text=True, timeout=300)
    assert partial.returncode == 0, partial.stderr
    rows = {line.split("|")[1].strip(): line for line in open(out + ".md") if line.startswith("| pendulum")}
    assert "(n=1)" in rows["pendulum-a"] and rows["pendulum-b"].split("|")[2].strip() == "-"
