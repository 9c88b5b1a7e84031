"""Offline evaluator: a small CNN trained on Fashion-MNIST whose penultimate features define
"FD in classifier space" and whose predictions give class accuracy of generated samples.

Images everywhere are float (B, 1, 28, 28) in [-1, 1], the output of DefaultModel.decode.
Shipped: weights/classifier.safetensors and weights/fmnist_test_stats.safetensors (mean and
covariance of the 10k test images' features), so evaluation needs no dataset at run time.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ditcache.metrics import mean_cov

WEIGHTS_DIR = Path(__file__).parent / "models" / "weights"
CLASSIFIER_FILE = "classifier.safetensors"
TEST_STATS_FILE = "fmnist_test_stats.safetensors"
FEATURE_DIM = 128  # width of the penultimate layer = dimension of the FD feature space


class FashionCNN(nn.Module):
    """3 conv stages (28 -> 14 -> 7 -> 3) and a 128-wide hidden layer; ~0.3M parameters."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 7, 7)
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2),  # (B, 128, 3, 3)
            nn.Flatten(),  # (B, 1152)
            nn.Linear(128 * 9, FEATURE_DIM), nn.ReLU(),  # (B, 128): the features
        )
        self.dropout = nn.Dropout(0.3)  # train-time only regulariser before the head
        self.head = nn.Linear(FEATURE_DIM, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.body(x)  # (B, 128)
        return feats, self.head(self.dropout(feats))  # (B, 128), (B, 10)


class Classifier:
    """The trained CNN in eval mode, with batched feature/logit extraction and reference stats."""

    def __init__(self, net: FashionCNN, weights_dir: Path, device: str | torch.device = "cpu"):
        self.net = net.to(device).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.weights_dir = Path(weights_dir)
        self._stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # split -> (mean, cov), per instance

    @torch.no_grad()
    def _run(self, images: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.as_tensor(images)
        if images.ndim == 3:
            images = images.unsqueeze(1)  # (B, 28, 28) -> (B, 1, 28, 28)
        if images.shape[1:] != (1, 28, 28):
            raise ValueError(f"images must be (B, 1, 28, 28) in [-1, 1], got {tuple(images.shape)}")
        feats, logits = [], []
        for chunk in images.split(batch_size):
            f, l = self.net(chunk.to(self.device, torch.float32))
            feats.append(f.cpu())
            logits.append(l.cpu())
        return torch.cat(feats), torch.cat(logits)  # (B, 128), (B, 10)

    def features(self, images, batch_size: int = 500) -> torch.Tensor:
        """Penultimate-layer features (B, 128) of images (B, 1, 28, 28) in [-1, 1]."""
        return self._run(images, batch_size)[0]

    def logits(self, images, batch_size: int = 500) -> torch.Tensor:
        """Class logits (B, 10) of images (B, 1, 28, 28) in [-1, 1]."""
        return self._run(images, batch_size)[1]

    def reference_stats(self, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """Feature mean (128,) and covariance (128, 128), float64, of real images: 'test' = the 10k
        test images (shipped file, no dataset needed); 'train10k' = the first 10k training images
        (computed from the dataset, for the real-vs-real sanity FD). Cached on this instance."""
        if split not in self._stats:
            if split == "test":
                self._stats[split] = _load_test_stats(self.weights_dir)
            elif split == "train10k":
                from ditcache.data import load_fashion_mnist

                images, _ = load_fashion_mnist("train")
                self._stats[split] = mean_cov(self.features(to_unit(torch.from_numpy(images[:10000].copy()))))
            else:
                raise KeyError(f"unknown reference split {split!r}; valid: ['test', 'train10k']")
        return self._stats[split]


def frames_to_items(frames: torch.Tensor) -> torch.Tensor:
    """Video frames (M, 1, H, W) in [-1, 1], H, W >= 28 -> the classifier's input (M, 1, 28, 28): the
    28 x 28 window centred on each frame's centre of brightness, where the moving item is (Fashion-MNIST
    items sit centred in their 28 x 28 box), kept inside the frame."""
    frames = frames.float()
    m, _, h, w = frames.shape
    mass = (frames[:, 0] + 1.0).clamp_min(0)                                    # (M, H, W): background -1 -> 0
    total = mass.sum((1, 2)).clamp_min(1e-6)
    rows = (mass.sum(2) * torch.arange(h)).sum(1) / total                       # (M,) centre row
    cols = (mass.sum(1) * torch.arange(w)).sum(1) / total
    top = (rows - 13.5).round().clamp(0, h - 28).long().tolist()
    left = (cols - 13.5).round().clamp(0, w - 28).long().tolist()
    return torch.stack([f[:, r:r + 28, c:c + 28] for f, r, c in zip(frames, top, left)])  # (M, 1, 28, 28)


def to_unit(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, 1, 28, 28) in [-1, 1]."""
    return images_uint8.float().div(127.5).sub(1.0).unsqueeze(1)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_test_stats(weights_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from safetensors import safe_open

    path = weights_dir / TEST_STATS_FILE
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        mean, cov = f.get_tensor("mean"), f.get_tensor("cov")
    if meta.get("classifier_sha256") != _sha256(weights_dir / CLASSIFIER_FILE):
        raise ValueError(f"{path} was computed with other classifier weights; rerun write_test_stats()")
    return mean, cov


def load_classifier(device: str | torch.device = "cpu", weights_dir: str | Path = WEIGHTS_DIR) -> Classifier:
    """The shipped classifier (safetensors only)."""
    from safetensors.torch import load_file

    path = Path(weights_dir) / CLASSIFIER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; train it with ditcache.evaluator.train_classifier()")
    net = FashionCNN()
    net.load_state_dict(load_file(str(path)), strict=True)
    return Classifier(net, Path(weights_dir), device)


@dataclass
class ClassifierTrainConfig:
    epochs: int = 4  # measured: ~91-92% test accuracy after 3-4 epochs of this net
    batch_size: int = 128  # standard for MNIST-sized CNNs
    lr: float = 2e-3  # Adam peak lr, cosine-decayed to 0 over the run
    weight_decay: float = 1e-4  # light AdamW decay


def train_classifier(seed: int = 0, threads: int = 1, weights_dir: str | Path = WEIGHTS_DIR,
                     config: ClassifierTrainConfig | None = None) -> float:
    """Train the CNN on the 60k training images, write classifier.safetensors (+ .json) and the
    test-set feature stats; returns the test accuracy."""
    from safetensors.torch import save_file

    from ditcache.data import load_fashion_mnist
    from ditcache.metrics import class_accuracy

    torch.set_num_threads(threads)
    config = ClassifierTrainConfig() if config is None else config
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = FashionCNN()
    images, labels = load_fashion_mnist("train")
    x, y = to_unit(torch.from_numpy(images.copy())), torch.from_numpy(labels)  # (60000, 1, 28, 28), (60000,)
    steps_per_epoch = x.shape[0] // config.batch_size
    total = config.epochs * steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    net.train()
    for _ in range(config.epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        for i in range(steps_per_epoch):
            idx = order[i * config.batch_size:(i + 1) * config.batch_size]
            loss = nn.functional.cross_entropy(net(x[idx])[1], y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    seconds = time.perf_counter() - t0
    path = weights_dir / CLASSIFIER_FILE
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    clf = load_classifier(weights_dir=weights_dir)
    test_images, test_labels = load_fashion_mnist("test")
    test_x = to_unit(torch.from_numpy(test_images.copy()))
    feats, logits = clf._run(test_x, 1000)
    accuracy = class_accuracy(logits, torch.from_numpy(test_labels))
    write_test_stats(feats, weights_dir)
    (weights_dir / "classifier.json").write_text(json.dumps({
        "architecture": "FashionCNN (ditcache.evaluator)", "feature_dim": FEATURE_DIM,
        "training": {**asdict(config), "seed": seed, "threads": threads, "seconds": round(seconds, 1),
                     "data": "fashion-mnist train 60k, no augmentation"},
        "test_accuracy": accuracy,
    }, indent=2) + "\n")
    return accuracy


def write_test_stats(test_features: torch.Tensor, weights_dir: str | Path = WEIGHTS_DIR) -> None:
    """Ship mean/cov of the 10k test features, tagged with the classifier's hash."""
    from safetensors.torch import save_file

    weights_dir = Path(weights_dir)
    mean, cov = mean_cov(test_features)
    save_file({"mean": mean, "cov": cov}, str(weights_dir / TEST_STATS_FILE),
              metadata={"classifier_sha256": _sha256(weights_dir / CLASSIFIER_FILE),
                        "count": str(test_features.shape[0])})


if __name__ == "__main__":
    print(f"test accuracy {train_classifier():.4f}")
