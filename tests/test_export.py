"""ONNX export: the exported graph acts like the checkpoint (masks, preprocessing, bounds), any batch size."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aql_agent.checkpoint import Policy, Preprocessing, save_checkpoint
from aql_agent.cli import main
from aql_agent.errors import AqlError
from aql_agent.learners import make_learner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from aql_agent.export import OnnxPolicy, export_onnx  # noqa: E402

TINY = {"hidden": [16, 16], "batch_size": 8}
OBS = 6


def policy_of(algo: str, act_dim: int, **config) -> Policy:
    rng = np.random.default_rng(1)
    learner = make_learner(algo, OBS, act_dim, {**TINY, **config})
    preprocessing = Preprocessing(tuple(rng.normal(size=OBS)), tuple(rng.uniform(0.5, 2.0, OBS)),
                                  (-2.0,) * (0 if learner.discrete else act_dim),
                                  (2.0,) * (0 if learner.discrete else act_dim))
    return Policy(learner, preprocessing, {"algo": algo, "step": 0})


def exported(policy: Policy) -> OnnxPolicy:
    return OnnxPolicy(export_onnx(policy), policy.obs_dim, policy.act_dim, policy.discrete, policy.info)


@pytest.mark.parametrize("algo", ["bc-discrete", "dqn", "bcq-discrete", "aql-discrete"])
def test_discrete_graphs_choose_the_checkpoints_actions_and_honour_masks(algo):
    policy = policy_of(algo, 7)
    onnx = exported(policy)
    rng = np.random.default_rng(0)
    for batch in (1, 5, 64):
        observations = rng.normal(size=(batch, OBS)).astype(np.float32) * 3
        masks = rng.random((batch, 7)) < 0.4
        masks[np.arange(batch), rng.integers(0, 7, batch)] = True
        masks[0] = False  # nothing legal: every action is
        expected = policy.act({"observation": observations, "action_mask": masks})
        got = onnx.act({"observation": observations, "action_mask": masks})
        assert np.array_equal(got, expected)
        assert masks[np.arange(1, batch), got[1:]].all()
    one = rng.normal(size=OBS).astype(np.float32)
    assert onnx.act({"observation": one, "action_mask": np.ones(7)}) == policy.act(one)


@pytest.mark.parametrize("algo", ["bc", "sac", "ddpg"])
def test_continuous_graphs_match_deterministic_policies_within_the_action_bounds(algo):
    policy = policy_of(algo, 3)
    onnx = exported(policy)
    observations = np.random.default_rng(0).normal(size=(50, OBS)).astype(np.float32) * 3
    got = onnx.act(observations)
    np.testing.assert_allclose(got, policy.act(observations), atol=1e-5)
    assert got.shape == (50, 3) and np.abs(got).max() <= 2.0


def test_sampling_policies_export_with_a_dynamic_batch():
    onnx = exported(policy_of("aql", 3))  # acts on the best of G's sampled candidates
    for batch in (1, 9):
        assert onnx.act(np.zeros((batch, OBS), np.float32)).shape == (batch, 3)


def test_bad_input_is_refused_clearly():
    onnx = exported(policy_of("dqn", 4))
    with pytest.raises(AqlError, match="does not fit this policy"):
        onnx.act(np.zeros((2, OBS + 1), np.float32))
    with pytest.raises(AqlError, match="action mask"):
        onnx.act({"observation": np.zeros((2, OBS), np.float32), "action_mask": np.ones(3)})
    with pytest.raises(AqlError, match="deterministically"):
        onnx.act(np.zeros(OBS, np.float32), deterministic=False)
    with pytest.raises(AqlError, match="bf16"):
        export_onnx(policy_of("dqn", 4, bf16=True))


def test_export_command_writes_and_checks_the_graph(tmp_path, capsys):
    policy = policy_of("aql-discrete", 5)
    checkpoint = save_checkpoint(tmp_path / "ckpt", policy.learner, policy.preprocessing, step=3)
    out = tmp_path / "policy.onnx"
    assert main(["export", "--checkpoint", checkpoint, "--out", str(out), "--check", "64"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inputs"] == ["observation", "action_mask"] and report["bytes"] == out.stat().st_size
    assert report["check"] == {"samples": 64, "equal_actions": 1.0, "legal": True}
    assert OnnxPolicy(str(out), OBS, 5, True).act(np.zeros(OBS, np.float32)) in range(5)
