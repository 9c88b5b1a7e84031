import os

# Before torch is imported: no OpenMP spin-waiting (another busy process slows 2-thread torch 20-40x),
# and no hub lookups.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
