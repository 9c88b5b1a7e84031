"""Metric functions on hand-made inputs with known answers."""

import math

import numpy as np
import pytest
import torch

from ditcache.metrics import (
    class_accuracy,
    frechet_distance,
    frechet_distance_from_stats,
    max_abs_error,
    mean_cov,
    psnr,
    ssim,
)


def test_psnr_identical_is_inf_and_known_value():
    a = torch.zeros(2, 1, 8, 8, dtype=torch.float64)  # float64 so that 0.2 and 0.1 are the only rounding
    assert psnr(a, a) == math.inf
    # every pixel off by 0.2 -> MSE 0.04, data range 2 -> 10 log10(4 / 0.04) = 20 dB exactly
    assert psnr(a, a + 0.2) == pytest.approx(20.0, abs=1e-9)
    assert psnr(a, a + 0.1, data_range=1.0) == pytest.approx(20.0, abs=1e-9)


def test_max_abs_error():
    a = torch.zeros(3, 4)
    b = a.clone()
    b[1, 2] = -0.75
    assert max_abs_error(a, b) == 0.75
    assert max_abs_error(a, a) == 0.0


def test_class_accuracy():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, -1.0], [0.1, 0.2]])
    assert class_accuracy(logits, torch.tensor([0, 1, 1, 1])) == 0.75
    with pytest.raises(ValueError):
        class_accuracy(logits, torch.tensor([0, 1]))


def test_ssim_identical_is_one_and_constant_shift():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 1, 28, 28, generator=g) * 2 - 1
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    # two constant images c and d: the structure terms are (0 + C2) / (0 + C2) = 1, so
    # SSIM = (2cd + C1) / (c^2 + d^2 + C1) with C1 = (0.01 * 2)^2
    c, d, c1 = 0.5, -0.25, (0.01 * 2.0) ** 2
    expected = (2 * c * d + c1) / (c * c + d * d + c1)
    assert ssim(torch.full((16, 16), c), torch.full((16, 16), d)) == pytest.approx(expected, abs=1e-12)


def test_ssim_matches_skimage():
    from skimage.metrics import structural_similarity
    g = torch.Generator().manual_seed(1)
    a = torch.rand(3, 1, 28, 28, generator=g, dtype=torch.float64) * 2 - 1
    b = (a + 0.3 * torch.randn(3, 1, 28, 28, generator=g, dtype=torch.float64)).clamp(-1, 1)
    ref = np.mean([
        structural_similarity(a[i, 0].numpy(), b[i, 0].numpy(), gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=2.0)
        for i in range(3)
    ])
    assert ssim(a, b) == pytest.approx(ref, abs=1e-6)


def test_fd_of_a_set_with_itself_is_zero():
    f = torch.randn(500, 16, generator=torch.Generator().manual_seed(2))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)


def test_fd_closed_form_between_gaussians():
    # N(m1, diag(s1)) vs N(m2, diag(s2)): FD = |m1-m2|^2 + sum (sqrt(s1) - sqrt(s2))^2
    m1, m2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    s1, s2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 4.0, 1.0])
    expected = 1.0 + 4.0 + (1.0 + 0.0 + 4.0)  # = 10
    assert frechet_distance_from_stats(m1, torch.diag(s1), m2, torch.diag(s2)) == pytest.approx(expected, abs=1e-10)
    # a non-diagonal case: rotating both covariances by the same orthogonal matrix changes nothing
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    a, b = q @ torch.diag(s1).double() @ q.T, q @ torch.diag(s2).double() @ q.T
    assert frechet_distance_from_stats(q @ m1.double(), a, q @ m2.double(), b) == pytest.approx(expected, abs=1e-9)


def test_fd_of_commuting_gaussians():
    # A = I, B = 4I in 5 dims, same mean: tr(A) + tr(B) - 2 tr(2I) = 5 + 20 - 20 = 5
    eye = torch.eye(5)
    assert frechet_distance_from_stats(torch.zeros(5), eye, torch.zeros(5), 4 * eye) == pytest.approx(5.0, abs=1e-10)


def test_mean_cov_matches_numpy():
    f = torch.randn(50, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    mu, cov = mean_cov(f)
    assert torch.allclose(mu, f.mean(0))
    assert np.allclose(cov.numpy(), np.cov(f.numpy(), rowvar=False))
