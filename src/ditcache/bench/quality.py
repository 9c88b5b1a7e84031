"""Quality of each setting against the uncached images on the same seeds and against real data, with
bootstrap intervals.

Per image (same seed cached and uncached): PSNR and SSIM, and ``featerr``, the distance between the
cached and uncached images in the shipped classifier's feature space, relative to the uncached features'
mean norm (a paired perceptual fidelity measure: 0 = identical, it ignores pixel shifts the classifier
does not see). Per set: FD in classifier space to the 10k Fashion-MNIST test images and class accuracy.

Intervals: the seeds are resampled with replacement ``bootstrap`` times (the same resamples for every
setting, so differences are paired). Means (PSNR, feature error, accuracy) get the 2.5 / 97.5 percentiles
of their resampled values. FD is biased upwards at small sample sizes, and a resample (with repeated
images) has fewer distinct images, so resampled FDs sit above the estimate, at small N all of them: FD
and its differences get the spread of their resamples centred on the estimate instead,
[q2.5 - b, q97.5 - b] with b = mean(resamples) - estimate (the shared upward shift removed; the bias of
the estimate itself is the same for every setting at one sample size and cancels in differences).
A difference to uncached counts as significant when its paired interval excludes 0.
"""

from __future__ import annotations

import statistics

import torch

from .. import metrics


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
    """The uncached reference images (and their features) that every setting is measured against."""

    def __init__(self, ref: torch.Tensor, labels: torch.Tensor | None, bootstrap: int, seed: int = 0):
        self.ref = ref
        self.images = ref.dim() == 4 and ref.shape[1] == 1
        self.classifier = None
        n = ref.shape[0]
        g = torch.Generator().manual_seed(seed)
        self.resamples = torch.randint(n, (bootstrap, n), generator=g) if bootstrap and n > 1 else None
        if labels is not None and self.images:
            from ..evaluator import load_classifier

            self.classifier = load_classifier()
            self.fd_ref = metrics.FrechetReference(*self.classifier.reference_stats("test"))
            self.labels = labels
            self.ref_feats = self.classifier.features(ref)                    # (N, 128)
            self.ref_norm = self.ref_feats.norm(dim=-1).double()               # (N,)
            self.ref_fd, self.ref_fd_boot = self._fd(self.ref_feats)
            self.ref_correct = self._correct(ref)

    # ---------------------------------------------------------------- helpers
    def _fd(self, feats: torch.Tensor) -> tuple[float, torch.Tensor | None]:
        value = self.fd_ref.of(feats)
        if self.resamples is None:
            return value, None
        return value, torch.tensor([self.fd_ref.of(feats[idx]) for idx in self.resamples])

    def _correct(self, images: torch.Tensor) -> torch.Tensor:
        return (self.classifier.logits(images).argmax(-1) == self.labels).double()   # (N,)

    def _mean_ci(self, per_image: torch.Tensor) -> tuple[float, tuple[float, float] | None]:
        value = float(per_image.mean())
        if self.resamples is None:
            return value, None
        return value, _interval(per_image[self.resamples].mean(1))

    # ---------------------------------------------------------------- the measures
    def reference_row(self) -> dict:
        """The uncached row: FD and accuracy with intervals (PSNR against itself means nothing)."""
        if self.classifier is None:
            return {}
        acc, acc_ci = self._mean_ci(self.ref_correct)
        return {"fd": self.ref_fd,
                "fd_ci": _centred_interval(self.ref_fd, self.ref_fd_boot) if self.ref_fd_boot is not None else None,
                "accuracy": acc, "accuracy_ci": acc_ci}

    def score(self, images: torch.Tensor) -> dict:
        """Every measure of one setting's images (same seeds and order as the reference)."""
        out: dict = {}
        if self.images:
            psnr = torch.tensor([min(metrics.psnr(a[None], b[None]), 99.0) for a, b in zip(images, self.ref)])
            out["psnr"], out["psnr_ci"] = self._mean_ci(psnr)  # per image, identical images count as 99 dB
            out["ssim"] = statistics.fmean(metrics.ssim(a[None], b[None]) for a, b in zip(images, self.ref))
        else:  # latents of a random-weight or local model: PSNR over their own range
            rng = float(self.ref.max() - self.ref.min())
            psnr = torch.tensor([min(metrics.psnr(a, b, data_range=rng), 99.0) for a, b in zip(images, self.ref)])
            out["psnr"], out["psnr_ci"] = self._mean_ci(psnr)
        if self.classifier is None:
            return out
        feats = self.classifier.features(images)
        dist = (feats - self.ref_feats).norm(dim=-1).double()                  # (N,) paired feature distance
        out["featerr"] = float(dist.mean() / self.ref_norm.mean())
        fd, fd_boot = self._fd(feats)
        correct = self._correct(images)
        out["fd"], out["accuracy"] = fd, float(correct.mean())
        out["fd_delta"] = fd - self.ref_fd
        out["accuracy_delta"] = out["accuracy"] - float(self.ref_correct.mean())
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
