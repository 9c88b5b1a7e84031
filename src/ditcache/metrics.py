"""Quality measures, pure functions on tensors (or anything torch.as_tensor takes).

Images are compared as float64. The Fréchet distance here is computed in the feature space of our
own Fashion-MNIST classifier (ditcache.evaluator): call it "FD in classifier space", never FID.
"""

from __future__ import annotations

import math

import torch


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(x).detach().to("cpu", torch.float64)


def mean_cov(feats) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) features -> mean (D,) and unbiased covariance (D, D), float64."""
    f = _f64(feats)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, D), got {tuple(f.shape)}")
    mu = f.mean(0)  # (D,)
    centred = f - mu  # (N, D)
    return mu, centred.T @ centred / (f.shape[0] - 1)  # (D,), (D, D)


def _sqrtm_psd(c: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric PSD matrix by eigendecomposition; tiny negative eigenvalues -> 0."""
    w, v = torch.linalg.eigh((c + c.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance_from_stats(mu_a, cov_a, mu_b, cov_b) -> float:
    """Fréchet distance between N(mu_a, cov_a) and N(mu_b, cov_b) (Dowson & Landau 1982):

        |mu_a - mu_b|^2 + tr(A) + tr(B) - 2 tr((A B)^(1/2)).

    tr((A B)^(1/2)) = sum of sqrt(eig(A^(1/2) B A^(1/2))): that product is symmetric PSD and
    similar to A B, so one eigh replaces the non-symmetric sqrtm FID code uses."""
    mu_a, cov_a, mu_b, cov_b = (_f64(t) for t in (mu_a, cov_a, mu_b, cov_b))
    root_a = _sqrtm_psd(cov_a)  # (D, D)
    middle = root_a @ cov_b @ root_a  # (D, D), symmetric PSD
    eig = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0)
    value = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * eig.sqrt().sum()
    return max(float(value), 0.0)  # rounding can leave -1e-12 for identical sets


class FrechetReference:
    """FD in classifier space against one fixed Gaussian (the real test set), with its covariance root
    computed once: each distance then costs one symmetric eigendecomposition (bootstrap resamples)."""

    def __init__(self, mu, cov):
        self.mu, self.cov = _f64(mu), _f64(cov)
        self.root = _sqrtm_psd(self.cov)                                       # (D, D)
        self.trace = float(self.cov.trace())

    def distance(self, mu, cov) -> float:
        mu, cov = _f64(mu), _f64(cov)
        middle = self.root @ cov @ self.root
        eig = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0)
        value = (mu - self.mu).square().sum() + cov.trace() + self.trace - 2 * eig.sqrt().sum()
        return max(float(value), 0.0)

    def of(self, feats) -> float:
        return self.distance(*mean_cov(feats))


def frechet_distance(feats_a, feats_b) -> float:
    """FD in classifier space between two feature sets (N_a, D) and (N_b, D)."""
    return frechet_distance_from_stats(*mean_cov(feats_a), *mean_cov(feats_b))


def class_accuracy(logits, labels) -> float:
    """Share of rows whose argmax is the requested label; logits (N, C), labels (N,)."""
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"{logits.shape[0]} logits rows but {labels.shape[0]} labels")
    return float((logits.argmax(-1) == labels).double().mean())


def max_abs_error(a, b) -> float:
    return float((_f64(a) - _f64(b)).abs().max())


def psnr(a, b, data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB over all elements; data_range 2 for images in [-1, 1].
    inf when a == b."""
    mse = float((_f64(a) - _f64(b)).square().mean())
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range ** 2 / mse)


def _gaussian_window(sigma: float, truncate: float) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)  # scipy.ndimage's rule: 11 taps for sigma 1.5, truncate 3.5
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()  # (2r+1,)


def ssim(a, b, data_range: float = 2.0, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> float:
    """Mean SSIM (Wang et al. 2004) with an 11-tap Gaussian window (sigma 1.5), population
    (co)variances, averaged over the positions where the window fits inside the image and over
    images. Inputs (H, W), (B, H, W) or (B, C, H, W); 1.0 when a == b. Matches
    skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=...) per 2-D image: skimage crops the same border."""
    a, b = _f64(a), _f64(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    h, w = a.shape[-2:]
    a, b = a.reshape(-1, 1, h, w), b.reshape(-1, 1, h, w)  # (M, 1, H, W): each 2-D image separately
    g = _gaussian_window(sigma, truncate=3.5)
    if h < g.numel() or w < g.numel():
        raise ValueError(f"images {h}x{w} smaller than the {g.numel()}-tap window")

    def blur(x: torch.Tensor) -> torch.Tensor:  # separable, 'valid' region only: (M, 1, H-2r, W-2r)
        x = torch.nn.functional.conv2d(x, g.view(1, 1, -1, 1))
        return torch.nn.functional.conv2d(x, g.view(1, 1, 1, -1))

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean((1, 2, 3)).mean())  # mean map per image, then mean over images
