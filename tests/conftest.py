import os

# Before torch is imported: no OpenMP spin-waiting (another busy process slows 2-thread torch 20-40x),
# and no hub lookups.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pipes():
    """``pipes(name)``: the tiny offline pipeline ``name`` (ditcache.pipelines), built once per test module."""
    from ditcache.pipelines import tiny_pipeline

    built: dict = {}

    def get(name: str):
        if name not in built:
            built[name] = tiny_pipeline(name)
        return built[name]

    return get


@pytest.fixture(autouse=True)
def _registries_restored():
    """A test's register_block / register_model calls are undone after it: the registries are process-wide, so a
    block class taught in one test would otherwise change what later tests find."""
    from ditcache import adapters

    saved = [(table, dict(table)) for table in (adapters.BLOCKS, adapters.MODELS, adapters.LEAN)]
    yield
    for table, before in saved:
        table.clear()
        table.update(before)
