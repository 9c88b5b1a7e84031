"""The process settings a benchmark script takes on its command line (benchmarks/process_settings.py): each is
read from sys.argv before torch loads, so each case runs in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

PROBE = """
import os, sys
sys.path.insert(0, {path!r})
from process_settings import apply_allocator, apply_wait_policy
print(apply_wait_policy(), os.environ.get("OMP_WAIT_POLICY", "unset"), apply_allocator())
"""


def _probe(*argv: str, env_policy: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    out = subprocess.run([sys.executable, "-c", PROBE.format(path=str(BENCHMARKS)), *argv], env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_passive_is_the_default_and_a_set_policy_is_kept():
    assert _probe(env_policy=None) == ["passive", "PASSIVE", "default"]
    assert _probe(env_policy="ACTIVE") == ["passive", "ACTIVE", "default"]  # setdefault: the user's value stays


def test_default_policy_unsets_the_variable():
    assert _probe("--wait-policy=default", env_policy="PASSIVE") == ["default", "unset", "default"]


def test_tuned_allocator_is_accepted_by_glibc():
    # apply_allocator exits if glibc's mallopt refuses either setting (returns 0)
    assert _probe("--allocator=tuned", env_policy=None) == ["passive", "PASSIVE", "tuned"]
