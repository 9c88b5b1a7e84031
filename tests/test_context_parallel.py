"""ditcache under diffusers' context parallelism: two ranks on gloo (CPU), each run bounded by a timeout.

Two processes run tests/cp_worker.py (a tiny Flux transformer sharded by sequence with Ulysses attention; rank 0
also runs it in one process as the reference); the tests read what rank 0 wrote. Ring attention is not run
here: diffusers' ring needs an attention backend that returns log-sum-exp, and the only one that runs on a CPU
in float32 (native) does not.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("cp_worker.py")
EXACT = 1e-5  # float tolerance: sums over other shard boundaries (measured: about 2e-7 relative)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(suite: str, out: Path, timeout: float, gloo_timeout: float = 60) -> tuple[int | None, str]:
    """Start two ranks of the worker; (return code of the worst rank, or None if killed at ``timeout``; stderr)."""
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=port, CP_TIMEOUT_S=str(gloo_timeout), OMP_WAIT_POLICY="PASSIVE",
                   OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(out), suite], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    codes, errs = [], []
    try:
        for p in procs:
            _, err = p.communicate(timeout=timeout)
            codes.append(p.returncode)
            errs.append(err)
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.communicate()
        return None, "".join(errs)
    return max(codes, key=abs), "".join(errs)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("cp") / "exact.json"
    code, err = launch("exact", out, timeout=120)
    assert code == 0, f"the two ranks did not finish (code {code}):\n{err[-3000:]}"
    return json.loads(out.read_text())


def test_uncached_and_fora1_match_one_process(results):
    for name in ("none", "fora1"):
        r = results[name]
        assert r["error"] < EXACT and r["ranks_agree"], (name, r)


@pytest.mark.parametrize("name", ["fora3", "taylorseer", "freqca", "speca"])
def test_cached_methods_match_the_one_process_cached_output(results, name):
    """Same plans on both ranks and as in one process, and the same output within float tolerance."""
    r = results[name]
    assert r["ranks_agree"] and r["same_plans_as_reference"], r
    assert r["error"] < EXACT, r


@pytest.mark.parametrize("name", ["toca-attention-global", "toca-random-global", "clusca-global", "toca-wan-global"])
def test_global_token_rule_is_the_one_process_choice(results, name):
    """ToCa's top-k over the gathered scores and ClusCa's clusters of the gathered probe tokens (sums of fresh
    rows reduced over the ranks) choose and propagate exactly what one process does. On Wan, ToCa also refreshes
    cross-attention rows: padded to one count on every rank, as its Ulysses all-to-all needs."""
    r = results[name]
    assert r["ranks_agree"] and r["same_plans_as_reference"], r
    assert r["error"] < EXACT, r


@pytest.mark.parametrize("name", ["toca-attention-shard", "toca-random-shard", "clusca-shard"])
def test_shard_token_rule_takes_one_count_per_rank(results, name):
    """Per shard: every rank refreshes the same number of tokens at every site and step (ToCa: ceil(k / 2) of
    its own tokens; ClusCa: one per cluster of its own clusters // 2); the output then differs from one
    process by less than caching itself costs."""
    r = results[name]
    rank0, rank1 = r["tokens"]
    assert r["ranks_agree"] and rank0 == rank1 and any(any(call) for call in rank0), r
    cost = results[f"{name.split('-')[0]}-single-vs-uncached"]
    assert EXACT < r["error"] < cost, (r["error"], cost)


def test_the_store_keeps_each_ranks_shard(results):
    """(B, n, D) per rank: 32 of 64 image tokens, 4 of 8 text tokens, 36 of 72 joint tokens (single blocks)."""
    for shapes in results["store_shapes"]:
        assert sorted(s[1] for s in shapes) == [4, 32, 36], shapes


def test_ditcache_applied_before_enable_parallelism(results):
    """Same output as one process; after remove() the model is the uncached sharded model again (diffusers'
    split hook, registered over ditcache's forward, survives the removal)."""
    r = results["ditcache-first"]
    assert r["error"] < EXACT and r["removed_error"] < EXACT, r


def test_speca_decides_from_the_whole_sequence(results):
    """The deadlock guard: at a verified step one rank's own error is below the threshold and the other's above;
    with the reduction both ranks see the same error and take the same next step, and the run finishes."""
    r = results["skewed"]
    (errors0, errors1), (local0, local1) = r["errors"], r["local"]
    assert errors0 == errors1 and r["actions"][0] == r["actions"][1]
    assert any(a < r["threshold"] < b or b < r["threshold"] < a for a, b in zip(local0, local1)), r


def test_without_the_reduction_the_ranks_deadlock(tmp_path):
    """The same SpeCa case with each rank deciding from its own error: one rank computes the next step (its
    attention waits in the Ulysses all-to-all) while the other forecasts it; gloo's timeout (3 s) ends it."""
    out = tmp_path / "unreduced.json"
    code, err = launch("deadlock-unreduced", out, timeout=90, gloo_timeout=3)
    assert code != 0 and not out.exists(), err[-2000:]
    assert code is None or "Timed out" in err or "timeout" in err.lower(), err[-2000:]
