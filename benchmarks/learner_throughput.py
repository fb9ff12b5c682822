"""Gradient steps per second of aql-agent's learners against d3rlpy's, side by side in one run.

`--suite hopper` (continuous): Hopper shapes (11-float observation, 3-float action). `--suite moba`
(discrete): moba-1v1's flat view (130-float observation, 53 actions; ours also apply the legal-action masks,
which d3rlpy has no notion of): DQN vs d3rlpy's DoubleDQN, discrete BCQ and discrete AQL vs its
DiscreteBCQ (256-256 networks on both sides; d3rlpy's BCQ shares the encoder between Q and G, ours does
not). Batch 256, the same number of torch threads for both,
trials interleaved, medians reported. For each pair the networks and sample counts are matched: 256-256
actors, critics and VAEs, 2 critics, BCQ with 10 action samples, BEAR with 10 target and 4 MMD samples, CQL
with 10 samples per proposal and the Lagrange weight (threshold 10), and warm starts switched off so the full
update is timed. d3rlpy is timed twice: `update()` alone, and with its replay buffer's
`sample_transition_batch` (what `fit()` pays per step). aql-agent is timed with its tensor sampler, in fp32
and with the opt-in bf16 autocast. FLOPs per update come from `torch.utils.flop_counter.FlopCounterMode`
and are compared with the machine's matmul throughput measured in the same run.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/learner_throughput.py            # 1 thread, 5 trials
    OMP_WAIT_POLICY=PASSIVE python benchmarks/learner_throughput.py --threads 2 --trials 3
    OMP_WAIT_POLICY=PASSIVE python benchmarks/learner_throughput.py --suite moba
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from aql_agent import __version__
from aql_agent.checkpoint import Preprocessing
from aql_agent.data import TransitionDataset
from aql_agent.learners import make_learner
from aql_agent.training import TensorSampler

BATCH, ROWS = 256, 100_000
#: suite -> (obs_dim, act_dim or number of discrete actions, discrete)
SHAPES = {"hopper": (11, 3, False), "moba": (130, 53, True)}

#: our algo -> (our config overrides, d3rlpy config class name, d3rlpy config kwargs)
PAIRS: dict[str, dict[str, tuple[str, dict, str, dict]]] = {
    "hopper": {
        "bc": ("bc", {}, "BCConfig", {}),
        "bcq": ("bcq", {"target_samples": 10, "act_samples": 10}, "BCQConfig", {"n_action_samples": 10}),
        "bear": ("bear", {"warmup_steps": 0, "mmd_samples": 4}, "BEARConfig", {"warmup_steps": 0}),
        "cql": ("cql", {"lagrange_threshold": 10.0}, "CQLConfig", {}),
        "aql": ("aql", {"warmup_steps": 0}, "BEARConfig", {"warmup_steps": 0}),
    },
    "moba": {
        "dqn": ("dqn", {}, "DoubleDQNConfig", {}),
        "bcq-discrete": ("bcq-discrete", {}, "DiscreteBCQConfig", {}),
        "aql-discrete": ("aql-discrete", {}, "DiscreteBCQConfig", {}),
    },
}


def make_data(suite: str, seed: int = 0) -> TransitionDataset:
    obs_dim, act_dim, discrete = SHAPES[suite]
    rng = np.random.default_rng(seed)
    terminals = np.zeros(ROWS, bool)
    timeouts = np.zeros(ROWS, bool)
    timeouts[999::1000] = True
    if discrete:
        masks = rng.random((ROWS, act_dim)) < 0.6
        actions = rng.integers(0, act_dim, ROWS)
        masks[np.arange(ROWS), actions] = True
        extra = {"actions": actions, "action_masks": masks, "next_action_masks": np.roll(masks, -1, axis=0)}
    else:
        extra = {"actions": rng.uniform(-1, 1, (ROWS, act_dim)).astype(np.float32)}
    return TransitionDataset(
        observations=rng.standard_normal((ROWS, obs_dim)).astype(np.float32),
        rewards=rng.standard_normal(ROWS).astype(np.float32),
        next_observations=rng.standard_normal((ROWS, obs_dim)).astype(np.float32),
        terminals=terminals, timeouts=timeouts, **extra)


def ours(algo: str, overrides: dict, data: TransitionDataset, bf16: bool, suite: str) -> Callable[[], None]:
    obs_dim, act_dim, discrete = SHAPES[suite]
    learner = make_learner(algo, obs_dim, act_dim, {**overrides, "batch_size": BATCH, "bf16": bf16})
    preprocessing = Preprocessing.identity(obs_dim, 0 if discrete else act_dim)
    sampler = TensorSampler(data, preprocessing, seed=0, device="cpu", discrete=discrete)
    return lambda: learner.update(sampler.sample(BATCH))


def d3rlpy_pair(config_name: str, kwargs: dict, data: TransitionDataset
                ) -> tuple[Callable[[], None], Callable[[], None]]:
    import d3rlpy

    dataset = d3rlpy.dataset.MDPDataset(data.observations, data.actions, data.rewards, data.terminals,
                                        data.timeouts)
    config = getattr(d3rlpy.algos, config_name)(batch_size=BATCH, **kwargs)
    algo = config.create(device="cpu:0")
    algo.build_with_dataset(dataset)
    fixed = dataset.sample_transition_batch(BATCH)
    return (lambda: algo.update(fixed)), (lambda: algo.update(dataset.sample_transition_batch(BATCH)))


def rate(fn: Callable[[], None], seconds: float) -> float:
    """Updates per second over at least `seconds` (after two warm-up calls)."""
    fn()
    fn()
    count, start = 0, time.perf_counter()
    while True:
        fn()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and count >= 3:
            return count / elapsed


def flops(fn: Callable[[], None]) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype, seconds: float = 1.0) -> float:
    """GFLOP/s of a 2560x256 @ 256x256 matmul, the shape of a 10-sample batched hidden layer."""
    a, b = torch.randn(2560, 256, dtype=dtype), torch.randn(256, 256, dtype=dtype)
    return 2 * 2560 * 256 * 256 * rate(lambda: a @ b, seconds) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing window per measurement")
    parser.add_argument("--suite", choices=list(SHAPES), default="hopper",
                        help="hopper: continuous learners; moba: discrete learners on moba-1v1's flat view")
    parser.add_argument("--algos", nargs="+", help="default: every pair of the suite")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import d3rlpy

    pairs = PAIRS[args.suite]
    data = make_data(args.suite)
    runners: dict[str, dict[str, Callable[[], None]]] = {}
    for name in args.algos or list(pairs):
        algo, overrides, d3_name, d3_kwargs = pairs[name]
        torch.manual_seed(0)
        update_only, with_sampler = d3rlpy_pair(d3_name, d3_kwargs, data)
        runners[name] = {"ours_fp32": ours(algo, overrides, data, False, args.suite),
                         "ours_bf16": ours(algo, overrides, data, True, args.suite),
                         "d3rlpy_update": update_only, "d3rlpy_fit": with_sampler}

    counted = {name: {k: flops(fn) / 1e9 for k, fn in group.items() if k in ("ours_fp32", "d3rlpy_update")}
               for name, group in runners.items()}
    samples: dict[str, dict[str, list[float]]] = {n: {k: [] for k in g} for n, g in runners.items()}
    peaks: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for trial in range(args.trials):
        peaks["fp32"].append(matmul_peak(torch.float32))
        peaks["bf16"].append(matmul_peak(torch.bfloat16))
        for name, group in runners.items():
            for key, fn in group.items():
                samples[name][key].append(rate(fn, args.seconds))
        print(f"trial {trial + 1}/{args.trials}: " + ", ".join(
            f"{n} {statistics.median(s['ours_fp32']):.0f} vs {statistics.median(s['d3rlpy_update']):.0f}"
            for n, s in samples.items()), flush=True)

    peak = {k: statistics.median(v) for k, v in peaks.items()}
    results = {}
    for name, group in samples.items():
        med = {k: statistics.median(v) for k, v in group.items()}
        results[name] = {
            "d3rlpy_algorithm": pairs[name][2].removesuffix("Config"),
            "updates_per_s": med, "trials": group,
            "ratio_fp32_vs_d3rlpy_update": med["ours_fp32"] / med["d3rlpy_update"],
            "ratio_bf16_vs_d3rlpy_update": med["ours_bf16"] / med["d3rlpy_update"],
            "ratio_fp32_vs_d3rlpy_fit": med["ours_fp32"] / med["d3rlpy_fit"],
            "ratio_bf16_vs_d3rlpy_fit": med["ours_bf16"] / med["d3rlpy_fit"],
            "gflop_per_update": counted[name],
            "gflops_achieved": {"ours_fp32": counted[name]["ours_fp32"] * med["ours_fp32"],
                                "d3rlpy_update": counted[name]["d3rlpy_update"] * med["d3rlpy_update"]},
        }
        results[name]["fraction_of_fp32_peak"] = {k: v / peak["fp32"]
                                                  for k, v in results[name]["gflops_achieved"].items()}
    obs_dim, act_dim, discrete = SHAPES[args.suite]
    record = {"suite": args.suite, "threads": args.threads, "trials": args.trials, "batch_size": BATCH,
              "obs_dim": obs_dim, ("actions" if discrete else "act_dim"): act_dim, "matmul_gflops": peak,
              "results": results, "aql_agent": __version__,
              "d3rlpy": d3rlpy.__version__, "torch": torch.__version__, "machine": platform.processor() or
              platform.machine(), "cpus": os.cpu_count()}
    os.makedirs(args.out, exist_ok=True)
    suffix = "" if args.suite == "hopper" else f"_{args.suite}"
    stem = os.path.join(args.out, f"learner_throughput{suffix}_t{args.threads}")
    with open(stem + ".json", "w") as f:
        json.dump(record, f, indent=2)
    print(table(record))
    plot(record, stem + ".png")


def table(record: dict) -> str:
    lines = ["| learner (vs d3rlpy) | aql fp32 | aql bf16 | d3rlpy update | d3rlpy update+sampler | fp32 ratio | "
             "bf16 ratio | GFLOP/update aql / d3rlpy | fraction of fp32 peak aql / d3rlpy |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in record["results"].items():
        u, g, p = r["updates_per_s"], r["gflop_per_update"], r["fraction_of_fp32_peak"]
        lines.append(f"| {name} ({r['d3rlpy_algorithm']}) | {u['ours_fp32']:.1f}/s | {u['ours_bf16']:.1f}/s | "
                     f"{u['d3rlpy_update']:.1f}/s | {u['d3rlpy_fit']:.1f}/s | "
                     f"**{r['ratio_fp32_vs_d3rlpy_update']:.2f}x** ({r['ratio_fp32_vs_d3rlpy_fit']:.2f}x) | "
                     f"**{r['ratio_bf16_vs_d3rlpy_update']:.2f}x** ({r['ratio_bf16_vs_d3rlpy_fit']:.2f}x) | "
                     f"{g['ours_fp32']:.2f} / {g['d3rlpy_update']:.2f} | "
                     f"{p['ours_fp32']:.2f} / {p['d3rlpy_update']:.2f} |")
    peak = record["matmul_gflops"]
    lines.append(f"\nmatmul throughput in the same run: fp32 {peak['fp32']:.0f} GFLOP/s, "
                 f"bf16 {peak['bf16']:.0f} GFLOP/s ({record['threads']} thread(s))")
    return "\n".join(lines)


def plot(record: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(record["results"])
    keys = [("d3rlpy_fit", "d3rlpy update + sampler"), ("d3rlpy_update", "d3rlpy update"),
            ("ours_fp32", "aql-agent fp32"), ("ours_bf16", "aql-agent bf16")]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (key, label) in enumerate(keys):
        ax.bar(x + (i - 1.5) * 0.2, [record["results"][n]["updates_per_s"][key] for n in names], 0.2, label=label)
    ax.set_xticks(x, [f"{n}\n(vs {record['results'][n]['d3rlpy_algorithm']})" for n in names])
    ax.set_yscale("log")
    ax.set_ylabel("gradient updates / s (log)")
    moba = record.get("suite", "hopper") == "moba"
    shapes = "moba-1v1 flat view (130 obs, 53 actions)" if moba else "Hopper shapes"
    ax.set_title(f"{shapes}, batch {record['batch_size']}, {record['threads']} thread(s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
