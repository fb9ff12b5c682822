"""Policies as ONNX graphs: for serving without torch's per-operator cost, and for engines that run models
natively (ONNX Runtime has C, C++, C# and Java APIs; Unity's inference engine reads ONNX).

The exported graph is the whole deterministic policy, preprocessing included: raw observation in
(discrete: plus the legal-action mask, nonzero = legal), environment action out (discrete: the index, never
a masked-out one; continuous: the action within the env's bounds). The batch dimension is dynamic.

    aql export --checkpoint runs/aql-moba --out policy.onnx
    policy = OnnxPolicy.from_checkpoint("runs/aql-moba")      # what `aql deploy --backend onnx` serves
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from aql_agent.checkpoint import Policy, load_policy
from aql_agent.errors import AqlError

OBSERVATION, ACTION_MASK, ACTION = "observation", "action_mask", "action"


def require_onnx() -> None:
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise AqlError(f"ONNX export and serving need the serve extra ({error.name} is missing): "
                       "pip install 'aql-agent[serve]'") from None


class _PolicyGraph(nn.Module):
    """`Policy.act` (deterministic) as one traceable module: normalise, act, mask or rescale."""

    def __init__(self, policy: Policy):
        super().__init__()
        self.learner = policy.learner
        self.nets = policy.learner.nets  # registered, so the weights become graph constants
        arrays = policy.preprocessing
        self.register_buffer("mean", torch.tensor(arrays.obs_mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(arrays.obs_std, dtype=torch.float32))
        if not self.learner.discrete:
            self.register_buffer("low", torch.tensor(arrays.action_low, dtype=torch.float32))
            self.register_buffer("high", torch.tensor(arrays.action_high, dtype=torch.float32))

    def forward(self, observation: torch.Tensor, action_mask: torch.Tensor | None = None) -> torch.Tensor:
        normalised = (observation - self.mean) / self.std
        if self.learner.discrete:
            legal = action_mask != 0
            legal = legal | ~legal.any(-1, keepdim=True)  # a row allowing nothing allows everything
            return self.learner.forward_policy(normalised, True, legal)
        unit = self.learner.forward_policy(normalised, True).clamp(-1.0, 1.0)
        return self.low + (unit + 1.0) * 0.5 * (self.high - self.low)


def export_onnx(policy: Policy, path: str | os.PathLike | None = None) -> bytes:
    """The policy as an ONNX model (bytes; also written to `path` when given)."""
    require_onnx()
    learner = policy.learner
    if learner.config.bf16:
        raise AqlError("export a checkpoint trained without bf16 autocast (ONNX graphs here are float32)")
    graph = _PolicyGraph(policy).eval()
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    example: tuple[torch.Tensor, ...] = (torch.zeros(2, learner.obs_dim),)
    names, shapes = [OBSERVATION], [{0: batch}]
    if learner.discrete:
        example += (torch.ones(2, learner.act_dim, dtype=torch.uint8),)
        names.append(ACTION_MASK)
        shapes.append({0: batch})
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:  # the exporter narrates to stdout and warns about absent torchvision ops; neither concerns a policy
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.inference_mode(False):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, example, dynamo=True, input_names=names, output_names=[ACTION],
                                        dynamic_shapes=tuple(shapes), verbose=False)
    except Exception as error:
        raise AqlError(f"could not export the {learner.name} policy to ONNX: {error}") from error
    finally:
        quiet.setLevel(level)
    model = program.model_proto.SerializeToString()
    if path is not None:
        with open(path, "wb") as f:
            f.write(model)
    return model


class OnnxPolicy:
    """An ONNX policy run by ONNX Runtime, with `Policy.act`'s interface (deterministic only)."""

    def __init__(self, model: bytes | str | os.PathLike, obs_dim: int, act_dim: int, discrete: bool,
                 info: dict[str, Any] | None = None, threads: int = 1):
        require_onnx()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        source = model if isinstance(model, bytes) else os.fspath(model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.obs_dim, self.act_dim, self.discrete, self.info = obs_dim, act_dim, discrete, dict(info or {})

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, threads: int = 1) -> OnnxPolicy:
        policy = load_policy(path)
        return cls(export_onnx(policy), policy.obs_dim, policy.act_dim, policy.discrete, policy.info, threads)

    def __call__(self, obs: Any) -> np.ndarray:
        return self.act(obs)

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        if not deterministic:
            raise AqlError("an ONNX policy acts deterministically; explore with the checkpoint's torch policy")
        mask = None
        if isinstance(obs, dict) and self.discrete:
            obs, mask = obs["observation"], obs.get("action_mask")
        array = np.asarray(obs, dtype=np.float32)
        single = array.ndim == 1
        if array.shape[-1:] != (self.obs_dim,):
            raise AqlError(f"observation of shape {array.shape} does not fit this policy, which takes "
                           f"[..., {self.obs_dim}]")
        feeds = {OBSERVATION: array.reshape(-1, self.obs_dim)}
        if self.discrete:
            rows = len(feeds[OBSERVATION])
            if mask is None:
                feeds[ACTION_MASK] = np.ones((rows, self.act_dim), np.uint8)
            else:
                mask_array = np.asarray(mask)
                if mask_array.size != rows * self.act_dim:
                    raise AqlError(f"action mask of shape {mask_array.shape} does not fit {rows} observation(s) "
                                   f"and {self.act_dim} actions")
                feeds[ACTION_MASK] = (mask_array.reshape(rows, self.act_dim) != 0).astype(np.uint8)
        out = self.session.run(None, feeds)[0]
        return out[0] if single else out


def agreement(policy: Policy, exported: OnnxPolicy, samples: int, seed: int = 0) -> dict[str, Any]:
    """How the exported graph's actions compare with the checkpoint's on random observations (and masks):
    discrete, the fraction of equal actions (all masks honoured); continuous, the largest difference."""
    rng = np.random.default_rng(seed)
    scale = np.asarray(policy.preprocessing.obs_std, np.float32)
    observations = (rng.normal(size=(samples, policy.obs_dim)) * scale
                    + np.asarray(policy.preprocessing.obs_mean, np.float32)).astype(np.float32)
    if policy.discrete:
        masks = rng.random((samples, policy.act_dim)) < 0.5
        masks[np.arange(samples), rng.integers(0, policy.act_dim, samples)] = True
        masks[0] = False  # a row allowing nothing: every action is allowed
        expected = policy.act({"observation": observations, "action_mask": masks})
        got = exported.act({"observation": observations, "action_mask": masks})
        legal = masks[np.arange(1, samples), got[1:]].all()
        return {"samples": samples, "equal_actions": float(np.mean(expected == got)), "legal": bool(legal)}
    expected, got = policy.act(observations), exported.act(observations)
    report = {"samples": samples, "max_abs_difference": float(np.abs(expected - got).max())}
    repeat = np.abs(policy.act(observations) - expected).max()
    if repeat > 0:  # BCQ, BEAR and AQL pick the best of sampled candidates: two torch calls differ too
        report["torch_repeat_max_abs_difference"] = float(repeat)
    return report

