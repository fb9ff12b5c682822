"""benchmarks/robustness.py at a small size: corrupted logs and hostile bridge frames never give a traceback,
never kill an agent, never yield silently wrong arrays, and a recording agent logs exactly what it answered."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_small_fuzz_run_finds_no_traceback_crash_or_silent_damage(tmp_path):
    out = str(tmp_path / "robustness")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "robustness.py"), "--logs", "100",
                             "--frames", "800", "--seed", "7", "--out", out], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.load(open(out + ".json"))
    totals = report["logs"]["totals"]
    assert report["logs"]["runs"] == 200 and totals.get("error", 0) > 60
    assert not {"traceback", "silently wrong", "multi-line or bad status"} & set(totals), totals
    for name, agent in report["bridge"].items():
        assert agent["frames"] >= 800 and agent["alive_at_end"] and agent["tracebacks"] == 0, (name, agent)
        assert agent["timeouts"] == 0 and agent["exit_status"] == 0, (name, agent)
        assert agent["rss_mib_at_end"] - agent["rss_mib_after_warmup"] < 50, (name, agent)
        codes = {code for code in agent["replies"] if code.startswith("error:")}
        assert {"error:malformed", "error:bad_field", "error:shape", "error:too_large"} <= codes, (name, codes)
    recording = report["bridge"]["recording agent (--policy random --record)"]
    assert recording["unreadable_logs"] == [] and recording["recorded_plus_unrecorded_equals_answered"]
    assert os.path.exists(out + ".png")
