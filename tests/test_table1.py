"""benchmarks/table1.py: a 2 x 2 x 1 grid runs in seconds and writes a well-formed table, JSON and plots."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aql_agent.adapters.gym import make_env, random_policy, record_episodes
from aql_agent.data import convert, load_dataset

pytestmark = pytest.mark.xdist_group("ray")  # its Tune grid starts a local Ray (see conftest)

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
               "--eval-every", "10", "--eval-episodes", "1", "--log-every", "10", "--jobs", "1",
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
            scores = [score for _, score in algo["seeds"]["0"]["curve"]]  # 2 evaluations: both in the "last 5"
            assert algo["last_mean"] == pytest.approx(sum(scores) / 2) and algo["last_std"] == 0
    table = open(out + ".md").read()
    # three tables: final score, mean of the last five evaluations, gen_mse
    assert "| pendulum-a |" in table and table.count("| dataset | bc | bcq |") == 3 and "**" in table
    assert os.path.getsize(out + "-curves.png") > 1000 and os.path.getsize(out + "-figure1.png") > 1000
    record = json.load(open(tmp_path / "records" / "20u" / "pendulum-a" / "bcq" / "seed0.json"))
    assert record["set"] == ["hidden=[16]"] and [s for s, _ in record["curve"]] == [10, 20]
    assert record["learner_config"]["hidden"] == [16] and "batch_size" in record["learner_config"]  # defaults too
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

    # Other settings than a record's are refused, not silently reused: one error line naming both.
    other = command[:command.index("bcq:hidden=[16]")] + ["bcq:hidden=[8]"] + command[command.index("--runs"):]
    refused = subprocess.run(other, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "hidden=[16]" in refused.stderr and "hidden=[8]" in refused.stderr, refused.stderr

    # A partial grid: a missing run shows as "-", a cell with fewer seeds than asked says how many.
    os.remove(tmp_path / "records" / "20u" / "pendulum-b" / "bc" / "seed0.json")
    partial = subprocess.run(command[:command.index("--seeds")] + ["--seeds", "0", "1", "--summary-only"]
                             + command[command.index("--steps"):], capture_output=True, text=True, timeout=300)
    assert partial.returncode == 0, partial.stderr
    rows = {line.split("|")[1].strip(): line for line in open(out + ".md") if line.startswith("| pendulum")}
    assert "(n=1)" in rows["pendulum-a"] and rows["pendulum-b"].split("|")[2].strip() == "-"

    # A record keeps its dataset's digest: the grid resumed on a remade, different file is refused, not mixed.
    assert record["data_sha256"] == load_dataset(datasets[0]).digest()
    shutil.copyfile(datasets[1], datasets[0])
    remade = subprocess.run(command + ["--summary-only"], capture_output=True, text=True, timeout=300)
    assert remade.returncode != 0 and "Traceback" not in remade.stderr
    assert "other data than" in remade.stderr and "pendulum-a.npz" in remade.stderr, remade.stderr


def test_a_tune_grid_gives_the_serial_harness_s_metrics(tmp_path):
    """2 algorithms x 1 dataset x 2 seeds, once run one after another and once as Ray Tune trials two at a
    time: every record's curve and final score are the same."""
    pytest.importorskip("ray.tune")
    env = make_env("Pendulum-v1", seed=0)
    log = str(tmp_path / "pendulum.aqlog")
    record_episodes(env, random_policy(env), log, episodes=2, seed=0, progress=False)
    convert(log, tmp_path / "pendulum.npz")
    import shutil
    import tempfile

    ray_home = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must fit in 107 bytes
    records = {}
    for jobs in ("1", "2"):
        command = [sys.executable, os.path.join(ROOT, "benchmarks", "table1.py"), "--algos", "bc", "bcq",
                   "--datasets", str(tmp_path / "pendulum.npz"), "--env", "Pendulum-v1", "--seeds", "0", "1",
                   "--steps", "20", "--eval-every", "10", "--eval-episodes", "1", "--log-every", "10",
                   "--set", "bcq:hidden=[16]", "--jobs", jobs, "--runs", str(tmp_path / f"runs-{jobs}"),
                   "--records", str(tmp_path / f"records-{jobs}"), "--out", str(tmp_path / f"table-{jobs}")]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                                env={**os.environ, "RAY_TMPDIR": ray_home, "HOME": ray_home})
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.count(": trained") == 4
        records[jobs] = {(algo, seed): json.load(open(tmp_path / f"records-{jobs}" / "20u" / "pendulum" / algo /
                                                      f"seed{seed}.json"))
                         for algo in ("bc", "bcq") for seed in (0, 1)}
    for key, serial in records["1"].items():
        tuned = records["2"][key]
        assert tuned["curve"] == serial["curve"] and tuned["final"] == serial["final"], key
    shutil.rmtree(ray_home, ignore_errors=True)


def test_the_verdict_compares_aql_with_the_best_other_column_within_a_pooled_std(monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    table1 = importlib.import_module("table1")

    def column(final: float, final_std: float, seeds: int = 3) -> dict:
        return {"final_mean": final, "final_std": final_std, "last_mean": final, "last_std": final_std,
                "seeds": dict.fromkeys(range(seeds))}

    results = {
        "ahead": {"algos": {"aql": column(70, 3), "bc": column(50, 4), "cql": column(30, 1)}},
        "level": {"algos": {"aql": column(48, 3), "bc": column(50, 4), "cql": column(30, 1)}},  # -2 > -3.5
        "behind": {"algos": {"aql": column(20, 1), "bc": column(25, 1), "cql": column(76, 9, seeds=2)}},
        "alone": {"algos": {"bc": column(20, 1)}},
    }
    answers = table1.verdicts(results, ["bc", "cql", "aql"], wanted=3)
    assert set(answers) == {"ahead", "level", "behind"}  # nothing to say without aql and another column
    assert answers["ahead"]["final"]["best_other"] == "bc" and answers["ahead"]["final"]["at_or_above"]
    assert answers["level"]["last"]["at_or_above"] and answers["level"]["last"]["pooled_std"] == pytest.approx(
        (12.5) ** 0.5)
    behind = answers["behind"]
    assert behind["final"]["best_other"] == "cql" and not behind["final"]["at_or_above"]
    assert behind["final"]["gap"] == -56 and not behind["complete"]  # cql has 2 seeds of 3
    assert answers["ahead"]["complete"]
