"""scikit-learn's EM for our mixture model, the reference the case's own EM is checked and
timed against (tests, ``benchmarks/gmm_em.py``); never imported by the pipeline."""

from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture


class FixedWeightsAndVariance(GaussianMixture):
    """scikit-learn's spherical EM with the weights held at 1/K and the variances at 1 (the
    M-step of the spherical model, then the known parameters put back): our model."""

    def _m_step(self, X, log_resp, xp=None):  # noqa: N803 (scikit-learn's name)
        super()._m_step(X, log_resp)
        k = self.n_components
        self.weights_ = np.full(k, 1.0 / k)
        self.covariances_ = np.ones(k)
        self.precisions_cholesky_ = np.ones(k)
