"""One table of bad inputs: each row must end in a named priorfit error whose message says what is wrong.

Never a stack trace from inside torch, numpy, Lightning or Hydra, and never a silent wrong answer.
"""

from __future__ import annotations

import datetime
import math

import numpy as np
import pytest
import torch

from priorfit import (
    GMM,
    AmortizedPosterior,
    CheckpointError,
    DistributionTransformer,
    InvalidHyperparameterError,
    LearningCurveExtrapolator,
    PFNClassifier,
    PFNRegressor,
    PriorfitError,
    PriorfitValidationError,
    load,
)
from priorfit.checkpoint import load_pfn_model, load_task
from priorfit.diagnostics import c2st, sbc, tarp
from priorfit.priors.simulators import SLCP, GaussianLinear, TwoMoons

pd = pytest.importorskip("pandas")

Invalid = PriorfitValidationError


@pytest.fixture(scope="module")
def ctx():
    """Fitted objects the rows query: a tiny posterior, the tabular estimators, an LC model, the DT."""
    torch.manual_seed(0)
    theta = torch.randn(300, 2)
    post = AmortizedPosterior("gmm", max_epochs=1, logger=None, progress_bar=False, network={"components": 1})
    post.fit_simulations(theta, theta + 0.1 * torch.randn(300, 2))
    X = np.random.default_rng(0).normal(size=(40, 3))
    y_class = (X[:, 0] > 0).astype(int)
    return {
        "post": post,
        "clf": PFNClassifier(n_estimators=1).fit(X, y_class),
        "reg": PFNRegressor(n_estimators=1).fit(X, X[:, 0]),
        "lc": LearningCurveExtrapolator().fit([1, 2, 3, 4], [0.3, 0.4, 0.45, 0.5]),
        "dt": load("dt-linear-gaussian-2d"),
        "prior": GMM(torch.ones(1), torch.zeros(1, 2), torch.eye(2).unsqueeze(0)),
        "X": X,
        "y": y_class,
    }


def _frame(**columns):
    return pd.DataFrame(columns)


X3 = np.random.default_rng(1).normal(size=(10, 3))
Y3 = (X3[:, 0] > 0).astype(int)
GOOD_SAMPLES = torch.randn(100, 30, 2)
GOOD_THETA = torch.randn(30, 2)

# (id, call, exception type, fragment of the message)
ROWS = [
    # ------------------------------------------------------------------ AmortizedPosterior: constructor and fit
    ("post-estimator", lambda c: AmortizedPosterior("nope"), InvalidHyperparameterError, "estimator must be"),
    ("post-estimator-int", lambda c: AmortizedPosterior(3), InvalidHyperparameterError, "estimator must be"),
    ("post-iid-method", lambda c: AmortizedPosterior(iid_method="x"), InvalidHyperparameterError, "iid_method"),
    ("post-lr-negative", lambda c: AmortizedPosterior(lr=-1), InvalidHyperparameterError, "lr must be"),
    ("post-lr-zero", lambda c: AmortizedPosterior(lr=0), InvalidHyperparameterError, "lr must be"),
    ("post-lr-nan", lambda c: AmortizedPosterior(lr=float("nan")), InvalidHyperparameterError, "lr must be"),
    ("post-lr-string", lambda c: AmortizedPosterior(lr="fast"), InvalidHyperparameterError, "lr must be"),
    ("post-batch-zero", lambda c: AmortizedPosterior(batch_size=0), InvalidHyperparameterError, "batch_size"),
    ("post-batch-float", lambda c: AmortizedPosterior(batch_size=2.5), InvalidHyperparameterError, "batch_size"),
    ("post-val-one", lambda c: AmortizedPosterior(validation_fraction=1.0), InvalidHyperparameterError, "validation"),
    ("post-val-neg", lambda c: AmortizedPosterior(validation_fraction=-0.5), InvalidHyperparameterError, "validation"),
    ("post-val-zero", lambda c: AmortizedPosterior(validation_fraction=0), InvalidHyperparameterError, "validation"),
    ("post-epochs-zero", lambda c: AmortizedPosterior(max_epochs=0), InvalidHyperparameterError, "max_epochs"),
    ("post-patience-neg", lambda c: AmortizedPosterior(patience=-1), InvalidHyperparameterError, "patience"),
    ("post-num-iid-zero", lambda c: AmortizedPosterior(num_iid=0), InvalidHyperparameterError, "num_iid"),
    ("post-num-iid-range", lambda c: AmortizedPosterior(num_iid=(5, 2)), InvalidHyperparameterError, "num_iid"),
    ("post-num-iid-str", lambda c: AmortizedPosterior(num_iid="10"), InvalidHyperparameterError, "num_iid"),
    ("post-logger", lambda c: AmortizedPosterior(logger="tensorboard"), InvalidHyperparameterError, "logger"),
    ("post-fisher-neg", lambda c: AmortizedPosterior(fisher_weight=-1), InvalidHyperparameterError, "fisher_weight"),
    ("post-steps-zero", lambda c: AmortizedPosterior(sampling_steps=0), InvalidHyperparameterError, "sampling_steps"),
    ("post-network-type", lambda c: AmortizedPosterior(network=[1]), InvalidHyperparameterError, "network"),
    (
        "post-fit-sims-few",
        lambda c: AmortizedPosterior().fit(None, None, num_simulations=5),
        InvalidHyperparameterError,
        "num_simulations",
    ),
    (
        "post-fit-sims-float",
        lambda c: AmortizedPosterior().fit(None, None, num_simulations=1e4),
        InvalidHyperparameterError,
        "num_simulations",
    ),
    (
        "post-fit-prior-none",
        lambda c: AmortizedPosterior().fit(None, lambda t: t, num_simulations=100),
        Invalid,
        "prior",
    ),
    (
        "post-fit-simulator-none",
        lambda c: AmortizedPosterior().fit(torch.distributions.Normal(torch.zeros(2), 1), None, num_simulations=100),
        Invalid,
        "simulator",
    ),
    (
        "post-fitsim-shapes",
        lambda c: AmortizedPosterior().fit_simulations(torch.zeros(10, 2), torch.zeros(9, 2)),
        Invalid,
        "need θ of shape",
    ),
    (
        "post-fitsim-theta-3d",
        lambda c: AmortizedPosterior().fit_simulations(torch.zeros(10, 2, 1), torch.zeros(10, 2)),
        Invalid,
        "need θ of shape",
    ),
    (
        "post-fitsim-strings",
        lambda c: AmortizedPosterior().fit_simulations([["a", "b"]] * 20, torch.zeros(20, 2)),
        Invalid,
        "numeric",
    ),
    (
        "post-fitsim-all-nan",
        lambda c: AmortizedPosterior().fit_simulations(torch.zeros(20, 2), torch.full((20, 2), float("nan"))),
        Invalid,
        "no usable simulations",
    ),
    (
        "post-fitsim-one-row",
        lambda c: AmortizedPosterior().fit_simulations(torch.zeros(1, 2), torch.zeros(1, 2)),
        Invalid,
        "at least",
    ),
    # ------------------------------------------------------------------ AmortizedPosterior: queries
    ("sample-zero", lambda c: c["post"].sample(torch.zeros(2), 0), Invalid, "num_samples"),
    ("sample-negative", lambda c: c["post"].sample(torch.zeros(2), -3), Invalid, "num_samples"),
    ("sample-float", lambda c: c["post"].sample(torch.zeros(2), 2.5), Invalid, "num_samples"),
    ("sample-string-n", lambda c: c["post"].sample(torch.zeros(2), "10"), Invalid, "num_samples"),
    ("sample-bool-n", lambda c: c["post"].sample(torch.zeros(2), True), Invalid, "num_samples"),
    ("sample-x-string", lambda c: c["post"].sample("1.0, 2.0", 10), Invalid, "x_obs"),
    ("sample-x-strings", lambda c: c["post"].sample(["a", "b"], 10), Invalid, "x_obs"),
    ("sample-x-none", lambda c: c["post"].sample(None, 10), Invalid, "x_obs"),
    ("sample-x-dict", lambda c: c["post"].sample({"x": 1}, 10), Invalid, "x_obs"),
    ("sample-x-width", lambda c: c["post"].sample(torch.zeros(3), 10), Invalid, "2"),
    ("sample-x-batch", lambda c: c["post"].sample(torch.zeros(4, 5, 2), 10), Invalid, "one set"),
    ("sample-x-nan", lambda c: c["post"].sample(torch.tensor([float("nan"), 0.0]), 10), Invalid, "NaN"),
    ("sample-x-inf", lambda c: c["post"].sample(torch.tensor([float("inf"), 0.0]), 10), Invalid, "infinite"),
    ("sample-x-empty", lambda c: c["post"].sample(torch.zeros(0, 2), 10), Invalid, "observation"),
    ("sample-x-complex", lambda c: c["post"].sample(torch.zeros(2, dtype=torch.complex64), 10), Invalid, "x_obs"),
    ("sample-unfitted", lambda c: AmortizedPosterior().sample(torch.zeros(2), 10), Invalid, "not trained"),
    ("log-prob-unfitted", lambda c: AmortizedPosterior().log_prob(torch.zeros(2), torch.zeros(2)), Invalid, "fit"),
    ("log-prob-theta-width", lambda c: c["post"].log_prob(torch.zeros(5, 3), torch.zeros(2)), Invalid, "θ must"),
    ("log-prob-theta-str", lambda c: c["post"].log_prob("a", torch.zeros(2)), Invalid, "theta"),
    ("log-prob-theta-nan", lambda c: c["post"].log_prob(torch.full((1, 2), math.nan), torch.zeros(2)), Invalid, "NaN"),
    ("log-prob-x-string", lambda c: c["post"].log_prob(torch.zeros(1, 2), "x"), Invalid, "x_obs"),
    ("map-x-string", lambda c: c["post"].map("x"), Invalid, "x_obs"),
    ("map-candidates-zero", lambda c: c["post"].map(torch.zeros(2), num_candidates=0), Invalid, "num_candidates"),
    ("save-folder", lambda c: c["post"].save("."), CheckpointError, "not a priorfit checkpoint"),
    ("save-unfitted", lambda c: AmortizedPosterior().save("x.safetensors"), Invalid, "not trained"),
    ("load-none", lambda c: load(None), CheckpointError, "registered name or a path"),
    ("load-device", lambda c: load("pfn-gp-1d", device="nonsense"), Invalid, "device"),
    ("load-prior-for-pfn", lambda c: load("tabular-clf-small", prior=c["prior"]), Invalid, "prior= is for posterior"),
    ("load-trusted-type", lambda c: load("pfn-gp-1d", trusted_targets="x"), CheckpointError, "trusted_targets"),
    ("posterior-device", lambda c: c["post"].posterior(torch.zeros(2), device="tpu"), Invalid, "device"),
    ("load-pfn-as-post", lambda c: AmortizedPosterior.load("pfn-gp-1d"), Invalid, "not an amortized posterior"),
    # ------------------------------------------------------------------ tabular estimators: fit
    ("clf-y-missing", lambda c: PFNClassifier().fit(X3, None), ValueError, "requires y"),
    ("clf-rows-mismatch", lambda c: PFNClassifier().fit(X3, Y3[:5]), ValueError, "inconsistent"),
    ("clf-one-row", lambda c: PFNClassifier().fit(X3[:1], Y3[:1]), ValueError, "minimum of 2"),
    ("clf-continuous-y", lambda c: PFNClassifier().fit(X3, X3[:, 0]), ValueError, "Unknown label type"),
    ("clf-n-estimators-zero", lambda c: PFNClassifier(n_estimators=0).fit(X3, Y3), ValueError, "n_estimators"),
    ("clf-n-estimators-float", lambda c: PFNClassifier(n_estimators=1.5).fit(X3, Y3), ValueError, "n_estimators"),
    ("clf-memory-zero", lambda c: PFNClassifier(max_memory_mb=0).fit(X3, Y3), ValueError, "max_memory_mb"),
    ("clf-transforms", lambda c: PFNClassifier(numeric_transforms=("log",)).fit(X3, Y3), ValueError, "numeric_transf"),
    ("clf-transforms-str", lambda c: PFNClassifier(numeric_transforms="standard").fit(X3, Y3), ValueError, "numeric"),
    ("clf-subsample-one", lambda c: PFNClassifier(subsample_rows=1).fit(X3, Y3), ValueError, "subsample_rows"),
    ("clf-device", lambda c: PFNClassifier(device="nonsense").fit(X3, Y3), Invalid, "device"),
    ("clf-device-cuda", lambda c: PFNClassifier(device="cuda").fit(X3, Y3), Invalid, "device"),
    ("clf-checkpoint-unknown", lambda c: PFNClassifier(checkpoint="nope").fit(X3, Y3), CheckpointError, "unknown"),
    ("clf-checkpoint-reg", lambda c: PFNClassifier(checkpoint="pfn-gp-1d").fit(X3, Y3), Invalid, "regression PFN"),
    (
        "clf-checkpoint-dt",
        lambda c: PFNClassifier(checkpoint="dt-linear-gaussian-2d").fit(X3, Y3),
        CheckpointError,
        "not a PFN",
    ),
    ("clf-inf", lambda c: PFNClassifier().fit(np.where(X3 > 1, np.inf, X3), Y3), ValueError, "infinity"),
    ("clf-3d", lambda c: PFNClassifier().fit(X3.reshape(10, 3, 1), Y3), ValueError, "dim"),
    ("clf-empty", lambda c: PFNClassifier().fit(np.zeros((0, 3)), []), ValueError, "0 sample"),
    ("clf-strings-numeric-col", lambda c: PFNClassifier().fit(_frame(a=["1", "x"] * 5, b=X3[:, 0]), Y3), None, None),
    (
        "clf-datetime-column",
        lambda c: PFNClassifier().fit(_frame(when=pd.date_range("2020", periods=10), b=X3[:, 0]), Y3),
        Invalid,
        "'when'",
    ),
    (
        "clf-timedelta-column",
        lambda c: PFNClassifier().fit(_frame(dur=pd.to_timedelta(np.arange(10), "s"), b=X3[:, 0]), Y3),
        Invalid,
        "'dur'",
    ),
    (
        "clf-python-datetimes",
        lambda c: PFNClassifier().fit(np.array([[datetime.datetime(2020, 1, i + 1), 1.0] for i in range(10)]), Y3),
        Invalid,
        "column 0",
    ),
    (
        "clf-object-mixed-column",
        lambda c: PFNClassifier().fit(_frame(a=[1.0, "x", 2.0, None, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], b=X3[:, 0]), Y3),
        None,
        None,
    ),
    (
        "clf-nullable-int-na",
        lambda c: PFNClassifier().fit(_frame(a=pd.array([1, None, 3, 4, 5, 6, 7, 8, 9, 10], dtype="Int64")), Y3),
        None,
        None,
    ),
    (
        "clf-nullable-float-na",
        lambda c: PFNClassifier().fit(_frame(a=pd.array([1.0, None] * 5, dtype="Float64"), b=X3[:, 0]), Y3),
        None,
        None,
    ),
    (
        "clf-nullable-bool-na",
        lambda c: PFNClassifier().fit(_frame(a=pd.array([True, None] * 5, dtype="boolean"), b=X3[:, 0]), Y3),
        None,
        None,
    ),
    ("clf-y-nan", lambda c: PFNClassifier().fit(X3, np.where(Y3 > 0, np.nan, 0.0)), ValueError, "NaN"),
    ("clf-too-many-classes", lambda c: PFNClassifier().fit(np.random.rand(30, 2), np.arange(30)), Invalid, "classes"),
    ("clf-too-many-features", lambda c: PFNClassifier().fit(np.random.rand(10, 65), Y3), Invalid, "features"),
    ("clf-too-many-rows", lambda c: PFNClassifier().fit(np.random.rand(1001, 2), np.arange(1001) % 2), Invalid, "rows"),
    # ------------------------------------------------------------------ tabular estimators: predict
    ("clf-predict-unfitted", lambda c: PFNClassifier().predict(X3), ValueError, "not fitted"),
    ("clf-predict-width", lambda c: c["clf"].predict(np.zeros((2, 4))), ValueError, "features"),
    ("clf-predict-inf", lambda c: c["clf"].predict(np.full((2, 3), np.inf)), ValueError, "infinity"),
    ("clf-predict-strings", lambda c: c["clf"].predict([["a", "b", "c"]]), Invalid, "column"),
    (
        "clf-predict-string-in-named-column",
        lambda c: (
            PFNClassifier(n_estimators=1).fit(_frame(a=X3[:, 0], b=X3[:, 1]), Y3).predict(_frame(a=["x"], b=[1.0]))
        ),
        Invalid,
        "column 'a'",
    ),
    ("clf-predict-1d", lambda c: c["clf"].predict(np.zeros(3)), ValueError, "2D array"),
    ("clf-predict-empty", lambda c: c["clf"].predict(np.zeros((0, 3))), ValueError, "0 sample"),
    ("reg-y-strings", lambda c: PFNRegressor().fit(X3, ["a"] * 10), Invalid, "numeric"),
    ("reg-y-huge", lambda c: PFNRegressor().fit(X3, X3[:, 0] * 1e200), Invalid, "too large"),
    ("reg-y-inf", lambda c: PFNRegressor().fit(X3, np.where(X3[:, 0] > 0, np.inf, 0)), ValueError, "infinity"),
    ("reg-y-2d", lambda c: PFNRegressor().fit(X3, np.zeros((10, 2))), ValueError, "1d array"),
    ("reg-checkpoint-clf", lambda c: PFNRegressor(checkpoint="tabular-clf-small").fit(X3, Y3), Invalid, "classif"),
    ("reg-output-type", lambda c: c["reg"].predict(c["X"][:2], output_type="bogus"), Invalid, "output_type"),
    ("reg-quantiles-out", lambda c: c["reg"].predict_quantiles(c["X"][:2], [0.0, 1.5]), Invalid, "quantile"),
    ("reg-quantiles-nan", lambda c: c["reg"].predict_quantiles(c["X"][:2], [math.nan]), Invalid, "quantile"),
    ("reg-quantiles-str", lambda c: c["reg"].predict_quantiles(c["X"][:2], ["a"]), Invalid, "quantile"),
    ("reg-density-mismatch", lambda c: c["reg"].predict_log_density(c["X"][:2], [1.0]), Invalid, "rows"),
    ("reg-density-nan", lambda c: c["reg"].predict_log_density(c["X"][:2], [1.0, math.nan]), Invalid, "NaN"),
    ("reg-density-str", lambda c: c["reg"].predict_log_density(c["X"][:2], ["a", "b"]), Invalid, "numeric"),
    ("reg-predict-unfitted", lambda c: PFNRegressor().predict(X3), ValueError, "not fitted"),
    # ------------------------------------------------------------------ GMM and the Distribution Transformer
    ("gmm-weights-neg", lambda c: GMM(torch.tensor([-1.0]), torch.zeros(1, 2), torch.eye(2)[None]), Invalid, "non-neg"),
    (
        "gmm-weights-nan",
        lambda c: GMM(torch.tensor([math.nan]), torch.zeros(1, 2), torch.eye(2)[None]),
        Invalid,
        "finite",
    ),
    ("gmm-means-shape", lambda c: GMM(torch.ones(1), torch.zeros(2), torch.eye(2)[None]), Invalid, "means must"),
    (
        "gmm-means-inf",
        lambda c: GMM(torch.ones(1), torch.full((1, 2), math.inf), torch.eye(2)[None]),
        Invalid,
        "infinite",
    ),
    (
        "gmm-cov-not-pd",
        lambda c: GMM(torch.ones(1), torch.zeros(1, 2), -torch.eye(2)[None]),
        Invalid,
        "positive definite",
    ),
    (
        "gmm-cov-asym",
        lambda c: GMM(torch.ones(1), torch.zeros(1, 2), torch.tensor([[[1.0, 0.5], [0.0, 1.0]]])),
        Invalid,
        "symmetric",
    ),
    ("gmm-cov-shape", lambda c: GMM(torch.ones(1), torch.zeros(1, 2), torch.eye(3)[None]), Invalid, "cov"),
    (
        "gmm-both-covs",
        lambda c: GMM(torch.ones(1), torch.zeros(1, 2), torch.eye(2)[None], scale_tril=torch.eye(2)[None]),
        Invalid,
        "exactly one",
    ),
    ("gmm-no-cov", lambda c: GMM(torch.ones(1), torch.zeros(1, 2)), Invalid, "exactly one"),
    ("gmm-weights-count", lambda c: GMM(torch.ones(3), torch.zeros(1, 2), torch.eye(2)[None]), Invalid, "weights"),
    ("gmm-strings", lambda c: GMM("a", "b", "c"), Invalid, "tensor"),
    ("dt-prior-type", lambda c: c["dt"].update("prior", torch.zeros(3, 2)), Invalid, "must be a GMM"),
    (
        "dt-prior-dim",
        lambda c: c["dt"].update(GMM(torch.ones(1), torch.zeros(1, 3), torch.eye(3)[None]), torch.zeros(1, 2)),
        Invalid,
        "dimension 3",
    ),
    (
        "dt-prior-components",
        lambda c: c["dt"].update(
            GMM(torch.ones(4) / 4, torch.zeros(4, 2), torch.eye(2).expand(4, 2, 2)), torch.zeros(1, 2)
        ),
        Invalid,
        "at most 3",
    ),
    ("dt-x-width", lambda c: c["dt"].update(c["prior"], torch.zeros(3, 5)), Invalid, "x must have shape"),
    ("dt-x-nan", lambda c: c["dt"].update(c["prior"], torch.full((3, 2), math.nan)), Invalid, "NaN"),
    ("dt-x-string", lambda c: c["dt"].update(c["prior"], "x"), Invalid, "x must"),
    ("dt-x-strings", lambda c: c["dt"].update(c["prior"], [["a", "b"]]), Invalid, "x must"),
    ("dt-x-4d", lambda c: c["dt"].update(c["prior"], torch.zeros(1, 1, 1, 2)), Invalid, "x must have shape"),
    (
        "dt-batch-mismatch",
        lambda c: c["dt"].update(
            GMM(torch.ones(2, 1), torch.zeros(2, 1, 2), torch.eye(2).expand(2, 1, 2, 2)), torch.zeros(3, 1, 2)
        ),
        Invalid,
        "2 priors but 3",
    ),
    (
        "dt-from-pretrained-pfn",
        lambda c: DistributionTransformer.from_pretrained("pfn-gp-1d"),
        Invalid,
        "not a Distribution Transformer",
    ),
    (
        "dt-from-pretrained-none",
        lambda c: DistributionTransformer.from_pretrained(None),
        CheckpointError,
        "registered name",
    ),
    # ------------------------------------------------------------------ simulators
    ("sim-theta-str", lambda c: TwoMoons().simulate("θ"), Invalid, "takes θ as a tensor"),
    ("sim-theta-dict", lambda c: TwoMoons().simulate({"a": 1}), Invalid, "takes θ as a tensor"),
    ("sim-theta-width", lambda c: TwoMoons().simulate(torch.zeros(4, 3)), Invalid, "θ of shape (N, 2)"),
    ("sim-theta-3d", lambda c: SLCP().simulate(torch.zeros(2, 2, 5)), Invalid, "θ of shape (N, 5)"),
    (
        "sim-reference-zero",
        lambda c: GaussianLinear(2).reference_posterior(torch.zeros(1, 2), 0),
        Invalid,
        "num_samples",
    ),
    ("sim-reference-float", lambda c: TwoMoons().reference_posterior(torch.zeros(1, 2), 2.5), Invalid, "num_samples"),
    ("sim-reference-none", lambda c: TwoMoons().reference_posterior(torch.zeros(1, 2), None), Invalid, "num_samples"),
    # ------------------------------------------------------------------ learning curves
    ("lc-y-above-one", lambda c: LearningCurveExtrapolator().fit([1, 2], [0.5, 1.5]), Invalid, "[0, 1]"),
    ("lc-y-nan", lambda c: LearningCurveExtrapolator().fit([1, 2], [0.5, math.nan]), Invalid, "NaN"),
    ("lc-y-strings", lambda c: LearningCurveExtrapolator().fit([1, 2], ["a", "b"]), Invalid, "numeric"),
    ("lc-y-empty", lambda c: LearningCurveExtrapolator().fit([], []), Invalid, "y must"),
    ("lc-y-3d", lambda c: LearningCurveExtrapolator().fit([1], np.zeros((1, 1, 1))), Invalid, "y must"),
    ("lc-t-decreasing", lambda c: LearningCurveExtrapolator().fit([2, 1], [0.5, 0.6]), Invalid, "increasing"),
    ("lc-t-zero", lambda c: LearningCurveExtrapolator().fit([0, 1], [0.5, 0.6]), Invalid, "[1, 100]"),
    ("lc-t-beyond", lambda c: LearningCurveExtrapolator().fit([1, 200], [0.5, 0.6]), Invalid, "[1, 100]"),
    ("lc-t-shape", lambda c: LearningCurveExtrapolator().fit([1, 2, 3], [0.5, 0.6]), Invalid, "shape"),
    ("lc-t-strings", lambda c: LearningCurveExtrapolator().fit(["a", "b"], [0.5, 0.6]), Invalid, "numeric"),
    (
        "lc-checkpoint-clf",
        lambda c: LearningCurveExtrapolator(checkpoint="tabular-clf-small").fit([1], [0.5]),
        Invalid,
        "classification",
    ),
    (
        "lc-checkpoint-gp",
        lambda c: LearningCurveExtrapolator(checkpoint="pfn-gp-1d").fit([1], [0.5]),
        Invalid,
        "learning curves",
    ),
    (
        "lc-checkpoint-none-type",
        lambda c: LearningCurveExtrapolator(checkpoint=3).fit([1], [0.5]),
        CheckpointError,
        "registered name",
    ),
    ("lc-device", lambda c: LearningCurveExtrapolator(device="nonsense").fit([1], [0.5]), Invalid, "device"),
    ("lc-unfitted", lambda c: LearningCurveExtrapolator().predict_mean([10]), Invalid, "not fitted"),
    ("lc-future-beyond", lambda c: c["lc"].predict_mean([500]), Invalid, "[1, 100]"),
    ("lc-future-2d", lambda c: c["lc"].predict_mean([[10]]), Invalid, "1-D"),
    ("lc-future-str", lambda c: c["lc"].predict_mean("10"), Invalid, "numeric"),
    ("lc-quantile-zero", lambda c: c["lc"].predict_quantiles([10], [0.0]), Invalid, "strictly between"),
    ("lc-quantile-str", lambda c: c["lc"].predict_quantiles([10], ["a"]), Invalid, "numeric"),
    ("lc-density-mismatch", lambda c: c["lc"].predict_log_density([10, 20], [0.5]), Invalid, ""),
    ("lc-prob-str", lambda c: c["lc"].prob_exceeds("a"), Invalid, "threshold"),
    ("lc-prob-nan", lambda c: c["lc"].prob_exceeds(math.nan), Invalid, "threshold"),
    ("lc-prob-list", lambda c: c["lc"].prob_exceeds([0.5, 0.6]), Invalid, "threshold"),
    ("lc-prob-none", lambda c: c["lc"].prob_exceeds(None), Invalid, "threshold"),
    # ------------------------------------------------------------------ checkpoints and hub
    ("ckpt-none", lambda c: load_task(None), CheckpointError, "registered name or a path"),
    ("ckpt-int", lambda c: load_task(3), CheckpointError, "registered name or a path"),
    ("ckpt-unknown", lambda c: load_task("pfn-gp-2d"), CheckpointError, "Did you mean"),
    ("ckpt-missing-path", lambda c: load_task("missing/model.ckpt"), CheckpointError, "does not exist"),
    ("ckpt-folder", lambda c: load_task("."), CheckpointError, "not a file"),
    (
        "ckpt-trusted-type",
        lambda c: load_task("pfn-gp-1d", trusted_targets=3),
        CheckpointError,
        "trusted_targets",
    ),
    ("pfn-none", lambda c: load_pfn_model(None), CheckpointError, "registered name or a path"),
    ("pfn-dt", lambda c: load_pfn_model("dt-linear-gaussian-2d"), CheckpointError, "not a PFN"),
    ("ckpt-map-location", lambda c: load_task("pfn-gp-1d", map_location="nonsense"), Invalid, "device"),
    # ------------------------------------------------------------------ diagnostics
    ("tarp-float16", lambda c: tarp(GOOD_SAMPLES.half(), GOOD_THETA.half()), Invalid, "float16"),
    ("tarp-bins-zero", lambda c: tarp(GOOD_SAMPLES, GOOD_THETA, num_bins=0), Invalid, "num_bins"),
    ("tarp-bins-neg", lambda c: tarp(GOOD_SAMPLES, GOOD_THETA, num_bins=-1), Invalid, "num_bins"),
    ("tarp-bins-float", lambda c: tarp(GOOD_SAMPLES, GOOD_THETA, num_bins=2.5), Invalid, "num_bins"),
    ("tarp-bootstrap-neg", lambda c: tarp(GOOD_SAMPLES, GOOD_THETA, num_bootstrap=-1), Invalid, "num_bootstrap"),
    ("tarp-metric", lambda c: tarp(GOOD_SAMPLES, GOOD_THETA, metric="cosine"), Invalid, "metric"),
    ("tarp-shapes", lambda c: tarp(GOOD_SAMPLES, GOOD_THETA[:5]), Invalid, "theta_true"),
    ("tarp-2d-samples", lambda c: tarp(GOOD_SAMPLES[0], GOOD_THETA), Invalid, "samples"),
    ("tarp-strings", lambda c: tarp("a", "b"), Invalid, "numeric"),
    ("tarp-nan", lambda c: tarp(torch.full((10, 30, 2), math.nan), GOOD_THETA), Invalid, "NaN"),
    ("tarp-references", lambda c: tarp(GOOD_SAMPLES, GOOD_THETA, references=torch.zeros(3, 2)), Invalid, "references"),
    ("tarp-int", lambda c: tarp(GOOD_SAMPLES.long(), GOOD_THETA.long()), None, None),
    ("sbc-bins-zero", lambda c: sbc(GOOD_SAMPLES, GOOD_THETA, num_bins=0), Invalid, "num_bins"),
    ("sbc-bins-one", lambda c: sbc(GOOD_SAMPLES, GOOD_THETA, num_bins=1), Invalid, "num_bins"),
    ("sbc-bins-float", lambda c: sbc(GOOD_SAMPLES, GOOD_THETA, num_bins=3.5), Invalid, "num_bins"),
    ("sbc-float16", lambda c: sbc(GOOD_SAMPLES.half(), GOOD_THETA.half()), Invalid, "float16"),
    ("sbc-nan", lambda c: sbc(torch.full((10, 30, 2), math.nan), GOOD_THETA), Invalid, "NaN"),
    ("sbc-shapes", lambda c: sbc(GOOD_SAMPLES, GOOD_THETA[:, :1]), Invalid, "theta_true"),
    ("sbc-strings", lambda c: sbc("a", GOOD_THETA), Invalid, "numeric"),
    ("c2st-dims", lambda c: c2st(torch.zeros(20, 2), torch.zeros(20, 3)), Invalid, "(N, D)"),
    ("c2st-few", lambda c: c2st(torch.zeros(3, 2), torch.zeros(20, 2)), Invalid, "at least"),
    (
        "c2st-classifier",
        lambda c: c2st(torch.randn(20, 2), torch.randn(20, 2), classifier="svm"),
        Invalid,
        "classifier",
    ),
    ("c2st-nan", lambda c: c2st(torch.full((20, 2), math.nan), torch.zeros(20, 2)), Invalid, "NaN"),
    ("c2st-folds", lambda c: c2st(torch.randn(20, 2), torch.randn(20, 2), folds=1), Invalid, "folds"),
    ("c2st-strings", lambda c: c2st("a", "b"), Invalid, "numeric"),
]

# found by a second pass with inputs outside the first list
ROWS += [
    ("save-unwritable", lambda c: c["post"].save("/proc/no-such-folder/post.safetensors"), CheckpointError, "cannot"),
    ("clf-memory-str", lambda c: PFNClassifier(max_memory_mb="1").fit(X3, Y3), Invalid, "max_memory_mb"),
    ("gmm-scale-tril-str", lambda c: GMM(torch.ones(1), torch.zeros(1, 2), scale_tril="x"), Invalid, "scale_tril"),
    (
        "gmm-scale-tril-zero",
        lambda c: GMM(torch.ones(1), torch.zeros(1, 2), scale_tril=torch.zeros(1, 2, 2)),
        Invalid,
        "positive diagonal",
    ),
    (
        "gmm-scale-tril-upper",
        lambda c: GMM(torch.ones(1), torch.zeros(1, 2), scale_tril=torch.tensor([[[1.0, 0.5], [0.0, 1.0]]])),
        Invalid,
        "lower triangular",
    ),
    ("dt-filter-none", lambda c: c["dt"].filter(c["prior"], None), Invalid, "iterable"),
    ("dt-filter-string", lambda c: c["dt"].filter(c["prior"], "abc"), Invalid, "iterable"),
    ("tarp-seed-str", lambda c: tarp(GOOD_SAMPLES, GOOD_THETA, seed="x"), Invalid, "seed"),
    ("tarp-constant-theta", lambda c: tarp(GOOD_SAMPLES, torch.zeros(30, 2)), Invalid, "does not vary in dimension 0"),
    ("sbc-seed-str", lambda c: sbc(GOOD_SAMPLES, GOOD_THETA, seed="x"), Invalid, "seed"),
]

# priors: sample's arguments are checked by every prior before anything is drawn
PRIORS = {
    "gp": lambda: __import__("priorfit.priors", fromlist=["GPPrior"]).GPPrior(),
    "bnn": lambda: __import__("priorfit.priors", fromlist=["BNNPrior"]).BNNPrior(),
    "scm": lambda: __import__("priorfit.priors", fromlist=["SCMPrior"]).SCMPrior(),
    "lc": lambda: __import__("priorfit.priors", fromlist=["LearningCurvePrior"]).LearningCurvePrior(),
    "gmm": lambda: __import__("priorfit.priors", fromlist=["RandomGMMPrior"]).RandomGMMPrior(),
}
for prior_name, make in PRIORS.items():
    ROWS += [
        (f"{prior_name}-sample-negative", lambda c, make=make: make().sample(-1, 5), Invalid, "batch_size"),
        (f"{prior_name}-sample-float", lambda c, make=make: make().sample(2.5, 5), Invalid, "batch_size"),
        (f"{prior_name}-points-str", lambda c, make=make: make().sample(2, "5"), Invalid, "num_points"),
        (f"{prior_name}-generator", lambda c, make=make: make().sample(2, 5, generator=0), Invalid, "generator"),
    ]
ROWS += [
    ("mixture-not-a-prior", lambda c: __import__("priorfit.priors").priors.PriorMixture([3]), Invalid, "not a prior"),
    ("gmm-prior-dim-zero", lambda c: __import__("priorfit.priors").priors.RandomGMMPrior(dim=0), Invalid, "dim"),
]

ROW_IDS = [row[0] for row in ROWS]
assert len(set(ROW_IDS)) == len(ROW_IDS), "row ids must be unique"


@pytest.mark.parametrize("call, error, fragment", [row[1:] for row in ROWS], ids=ROW_IDS)
def test_bad_input_gets_a_named_error(ctx, call, error, fragment):
    if error is None:  # accepted inputs that used to fail: they must work
        call(ctx)
        return
    with pytest.raises(error) as raised:
        call(ctx)
    assert isinstance(raised.value, PriorfitError) or error is ValueError, type(raised.value)
    assert fragment.lower() in str(raised.value).lower(), str(raised.value)


# priorfit-train overrides: each is refused by name before any prior data, border or simulation is drawn
OVERRIDES = [
    (["task.lr=-1"], "lr must be"),
    (["task.lr=0"], "lr must be"),
    (["task.lr=abc"], "lr must be"),
    (["task.weight_decay=-1"], "weight_decay"),
    (["task.warmup_steps=-5"], "warmup_steps"),
    (["task.warmup_steps=2.5"], "warmup_steps"),
    (["task.min_lr_ratio=2"], "min_lr_ratio"),
    (["task.num_buckets=1"], "num_buckets"),
    (["task.num_buckets=10000000"], "num_buckets"),
    (["task.border_datasets=0"], "border_datasets"),
    (["task.objective=ranking"], "objective"),
    (["data.batch_size=0"], "data.batch_size"),
    (["data.batch_size=-4"], "data.batch_size"),
    (["data.batch_size=abc"], "data.batch_size"),
    (["data.num_points=1"], "data.num_points"),
    (["data.min_context=0"], "data.min_context"),
    (["data.max_context=1000"], "max_context < num_points"),
    (["data.val_batches=0"], "data.val_batches"),
    (["trainer.max_steps=abc"], "trainer.max_steps"),
    (["trainer.max_steps=-5"], "trainer.max_steps"),
    (["trainer.max_steps=2.5"], "trainer.max_steps"),
    (["trainer.val_check_interval=0"], "trainer.val_check_interval"),
    (["trainer.val_check_interval=abc"], "trainer.val_check_interval"),
    (["network.n_layers=-1"], "n_layers"),
    (["network.n_layers=1000000"], "n_layers"),
    (["network.d_model=0"], "d_model"),
    (["network.n_heads=0"], "n_heads"),
    (["experiment=sbi_two_moons", "task.lr=-1"], "lr must be"),
    (["experiment=sbi_two_moons", "data.num_simulations=0"], "num_simulations"),
    (["experiment=sbi_two_moons", "data.batch_size=0"], "batch_size"),
    (["experiment=sbi_two_moons", "data.validation_fraction=1.5"], "validation_fraction"),
    (["experiment=sbi_two_moons", "network.kind=nope"], "unknown posterior network kind"),
    (["experiment=sbi_two_moons", "network.transforms=0"], "transforms"),
    (["experiment=dt_linear_gaussian_2d", "task.lr=-1"], "lr must be"),
    (["experiment=dt_linear_gaussian_2d", "network.n_layers=-2"], "n_layers"),
]


@pytest.mark.parametrize("overrides, fragment", OVERRIDES, ids=[" ".join(o) for o, _ in OVERRIDES])
def test_bad_training_overrides_get_a_named_error(tmp_path, overrides, fragment, monkeypatch):
    from priorfit.train import train
    from tests.helpers import compose_config

    def no_prior_data(*args, **kwargs):  # nothing may be drawn before the settings are checked
        raise AssertionError("prior data drawn before the settings were checked")

    monkeypatch.setattr("priorfit.networks.bar_distribution.borders_from_samples", no_prior_data)
    monkeypatch.setattr("priorfit.tasks.pfn.borders_from_samples", no_prior_data)
    monkeypatch.setattr("priorfit.tasks.posterior.simulate_budget", no_prior_data)
    with pytest.raises(InvalidHyperparameterError) as raised:
        train(compose_config(tmp_path, overrides))
    assert fragment.lower() in str(raised.value).lower(), str(raised.value)
