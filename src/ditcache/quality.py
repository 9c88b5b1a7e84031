"""Quality of each setting against the uncached images on the same seeds and against real data, with
bootstrap intervals.

Per sample (same seed cached and uncached): PSNR and SSIM, and ``featerr``, the distance between the
cached and uncached samples in the shipped classifier's feature space, relative to the uncached features'
mean norm (a paired perceptual fidelity measure: 0 = identical, blind to what the classifier ignores).
Per set: FD in classifier space to the 10k Fashion-MNIST test images and class accuracy. Clips (video
defaults) are judged frame by frame through the same classifier (each frame's item cropped out,
``evaluator.frames_to_items``), plus two temporal measures: ``consistency``, the share of a clip's
frames given the clip's majority label, and ``motion_err``, how far the frame-to-frame changes are from
the uncached clip's (relative L1).

Intervals: the seeds are resampled with replacement ``bootstrap`` times (the same resamples for every
setting, so differences are paired; a clip's frames move together). Means get the 2.5 / 97.5 percentiles
of their resampled values. FD is biased upwards at small sample sizes, and a resample (with repeated
samples) has fewer distinct ones, so resampled FDs sit above the estimate, at small N all of them: FD
and its differences get the spread of their resamples centred on the estimate instead,
[q2.5 - b, q97.5 - b] with b = mean(resamples) - estimate (the shared upward shift removed; the bias of
the estimate itself is the same for every setting at one sample size and cancels in differences).
A difference to uncached counts as significant when its paired interval excludes 0.

It sits below ``models`` (whose cards measure the shipped weights with it) and ``bench``.
"""

from __future__ import annotations

import torch

from . import metrics


def _interval(samples: torch.Tensor) -> tuple[float, float]:
    """Percentile interval of bootstrap samples."""
    lo, hi = torch.quantile(samples.double(), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return lo, hi


def _centred_interval(estimate: float, samples: torch.Tensor) -> tuple[float, float]:
    """Percentile interval of resamples shifted so their mean sits on the estimate (see the module doc)."""
    shift = float(samples.double().mean()) - estimate
    lo, hi = _interval(samples)
    return lo - shift, hi - shift


class Quality:
    """The uncached reference samples (and their features) that every setting is measured against.
    ref: images (N, 1, 28, 28), clips (N, F, 1, H, W), or latents of other models (PSNR only)."""

    def __init__(self, ref: torch.Tensor, labels: torch.Tensor | None, bootstrap: int, seed: int = 0):
        self.ref = ref
        self.video = ref.dim() == 5
        self.pictures = self.video or (ref.dim() == 4 and ref.shape[1] == 1)
        self.classifier = None
        n = ref.shape[0]
        g = torch.Generator().manual_seed(seed)
        self.resamples = torch.randint(n, (bootstrap, n), generator=g) if bootstrap and n > 1 else None
        if labels is not None and self.pictures:
            from .evaluator import load_classifier

            self.classifier = load_classifier()
            self.fd_ref = metrics.FrechetReference(*self.classifier.reference_stats("test"))
            self.frames = ref.shape[1] if self.video else 1
            self.labels = labels.repeat_interleave(self.frames)                 # per frame
            self.ref_feats, ref_logits = self._classify(ref)                   # (N * F, 128), (N * F, 10)
            self.ref_norm = self._per_sample(self.ref_feats.norm(dim=-1).double())   # (N,)
            self.ref_fd, self.ref_fd_boot = self._fd(self.ref_feats)
            self.ref_correct = self._per_sample((ref_logits.argmax(-1) == self.labels).double())
            self.ref_consistency = self._consistency(ref_logits) if self.video else None

    # ---------------------------------------------------------------- helpers
    def _classify(self, samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and logits per image, or per frame of each clip (frames in clip order)."""
        if self.video:
            from .evaluator import frames_to_items

            samples = frames_to_items(samples.flatten(0, 1))                  # (N * F, 1, 28, 28)
        feats = self.classifier.features(samples)
        return feats, self.classifier.net.head(feats)

    def _per_sample(self, per_frame: torch.Tensor) -> torch.Tensor:
        """(N * F,) -> (N,): the mean over each clip's frames (images: unchanged)."""
        return per_frame.reshape(-1, self.frames).mean(1)

    def _frames_of(self, idx: torch.Tensor) -> torch.Tensor:
        """Sample indices (N,) -> the indices of their frames (N * F,)."""
        return (idx[:, None] * self.frames + torch.arange(self.frames)).reshape(-1)

    def _fd(self, feats: torch.Tensor) -> tuple[float, torch.Tensor | None]:
        value = self.fd_ref.of(feats)
        if self.resamples is None:
            return value, None
        return value, torch.tensor([self.fd_ref.of(feats[self._frames_of(idx)]) for idx in self.resamples])

    def _consistency(self, logits: torch.Tensor) -> torch.Tensor:
        """(N,) share of each clip's frames whose predicted label is the clip's most frequent one."""
        pred = logits.argmax(-1).reshape(-1, self.frames)                     # (N, F)
        return (pred == pred.mode(1).values[:, None]).double().mean(1)

    def _mean_ci(self, per_sample: torch.Tensor) -> tuple[float, tuple[float, float] | None]:
        value = float(per_sample.mean())
        if self.resamples is None:
            return value, None
        return value, _interval(per_sample[self.resamples].mean(1))

    # ---------------------------------------------------------------- the measures
    def reference_row(self) -> dict:
        """The uncached row: FD and accuracy with intervals (PSNR against itself means nothing)."""
        if self.classifier is None:
            return {}
        acc, acc_ci = self._mean_ci(self.ref_correct)
        out = {"fd": self.ref_fd, "accuracy": acc, "accuracy_ci": acc_ci,
               "fd_ci": _centred_interval(self.ref_fd, self.ref_fd_boot) if self.ref_fd_boot is not None else None}
        if self.video:
            out["consistency"], out["consistency_ci"] = self._mean_ci(self.ref_consistency)
        return out

    def score(self, samples: torch.Tensor) -> dict:
        """Every measure of one setting's samples (same seeds and order as the reference)."""
        out: dict = {}
        pairs = list(zip(samples, self.ref))
        rng = 2.0 if self.pictures else float(self.ref.max() - self.ref.min())  # latents: their own range
        psnr = torch.tensor([min(metrics.psnr(a, b, data_range=rng), 99.0) for a, b in pairs])
        out["psnr"], out["psnr_ci"] = self._mean_ci(psnr)  # per sample, identical samples count as 99 dB
        if self.pictures:
            out["ssim"] = float(torch.tensor([metrics.ssim(a, b) for a, b in pairs]).mean())
        if self.classifier is None:
            return out
        feats, logits = self._classify(samples)
        dist = self._per_sample((feats - self.ref_feats).norm(dim=-1).double())   # (N,) paired feature distance
        out["featerr"] = float(dist.mean() / self.ref_norm.mean())
        fd, fd_boot = self._fd(feats)
        correct = self._per_sample((logits.argmax(-1) == self.labels).double())
        out["fd"], out["accuracy"] = fd, float(correct.mean())
        out["fd_delta"] = fd - self.ref_fd
        out["accuracy_delta"] = out["accuracy"] - float(self.ref_correct.mean())
        if self.video:
            consistency = self._consistency(logits)
            out["consistency"], out["consistency_ci"] = self._mean_ci(consistency)
            moves, ref_moves = samples.diff(dim=1), self.ref.diff(dim=1)       # (N, F - 1, 1, H, W)
            out["motion_err"] = float((moves - ref_moves).abs().sum() / ref_moves.abs().sum().clamp_min(1e-12))
        if self.resamples is not None:
            r = self.resamples
            out["featerr_ci"] = _interval(dist[r].mean(1) / self.ref_norm[r].mean(1))
            out["fd_ci"] = _centred_interval(fd, fd_boot)
            out["fd_delta_ci"] = _centred_interval(out["fd_delta"], fd_boot - self.ref_fd_boot)
            out["accuracy_ci"] = _interval(correct[r].mean(1))
            out["accuracy_delta_ci"] = _interval((correct - self.ref_correct)[r].mean(1))
            out["fd_significant"] = not (out["fd_delta_ci"][0] <= 0.0 <= out["fd_delta_ci"][1])
            out["accuracy_significant"] = not (out["accuracy_delta_ci"][0] <= 0.0 <= out["accuracy_delta_ci"][1])
        return out
