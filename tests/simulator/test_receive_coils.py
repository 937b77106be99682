import numpy as np
import pytest

from gadgets.simulator.receive_coils import CoilSpec, noise_covariance, sensitivities


def test_coils_and_noise_model():
    rng = np.random.default_rng(0)
    pts = np.array([[0.0, 0.0, 0.0], [60.0, 0.0, 0.0], [-60.0, 0.0, 0.0]])
    s = sensitivities(CoilSpec("loops", 8), pts, rng)
    assert np.sqrt(np.sum(np.abs(s[:, 0]) ** 2)) == pytest.approx(1.0, rel=1e-5)
    assert np.argmax(np.abs(s[:, 1])) != np.argmax(np.abs(s[:, 2]))  # near coils dominate
    psi = noise_covariance(CoilSpec("loops", 8), rng)
    np.testing.assert_allclose(psi, psi.conj().T)
    assert np.linalg.eigvalsh(psi).min() > 0
    gains = np.sqrt(np.real(np.diag(psi)))
    assert 0.85 <= gains.min() and gains.max() <= 1.2 and np.ptp(gains) > 0.05
    corr = np.abs(psi / np.outer(gains, gains))
    neighbours = np.sort(corr - np.eye(8), axis=1)[:, -1]
    assert np.all((neighbours >= 0.1) & (neighbours <= 0.3 + 1e-9))
    birdcage = sensitivities(CoilSpec("birdcage", 1), pts, rng)
    assert birdcage.shape == (1, 3) and np.allclose(np.abs(birdcage[0, 0]), 1.0)
