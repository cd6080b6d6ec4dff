"""scikit-learn estimators around pretrained tabular PFNs: ``PFNClassifier`` and ``PFNRegressor``.

``fit`` stores the (preprocessed) training table as the context; ``predict*`` runs one forward pass of
the pretrained transformer per query chunk, for every ensemble member at once, and averages the members'
predictive distributions. No gradient step ever happens: "fitting" is conditioning.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from priorfit._validation import check_device, check_float
from priorfit.checkpoint import PFNModel, cached_pfn
from priorfit.domain import TrainingDomain
from priorfit.errors import PretrainingLimitError, PriorfitValidationError
from priorfit.networks.bar_distribution import BarDistribution
from priorfit.networks.transformer import QUERY_BLOCK
from priorfit.preprocessing import (
    NUMERIC_TRANSFORMS,
    MemberView,
    TableEncoder,
    check_table,
    table_domain,
    warn_heavy_tails,
)

__all__ = ["PFNClassifier", "PFNRegressor", "PretrainingLimitError", "MAX_TRAIN_ROWS"]

# the bundled checkpoints saw contexts of at most 448 rows; beyond 1,000 their accuracy is untested
MAX_TRAIN_ROWS = 1000
DEFAULT_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
EXTRAPOLATION_ADVICE = (
    "No training row has a value near it (the training range widened by 10 % on each side), so the prediction "
    "extrapolates; a regressor's predict() mean can be far off there, its median less so."
)


class _TabularPFN(BaseEstimator):
    """Shared fit/predict machinery; subclasses say the objective and read the averaged outputs."""

    _objective: str
    _default_checkpoint: str

    def __init__(
        self,
        *,
        checkpoint: str | os.PathLike | None = None,
        n_estimators: int = 8,
        random_state: int | np.random.RandomState | None = 0,
        device: str = "cpu",
        ignore_pretraining_limits: bool = False,
        max_memory_mb: float = 1024.0,
        subsample_rows: int | None = None,
        numeric_transforms: tuple[str, ...] = ("standard", "standard", "standard", "quantile"),
        cache_context: bool = True,
    ) -> None:
        self.checkpoint = checkpoint
        self.cache_context = cache_context
        self.n_estimators = n_estimators
        self.subsample_rows = subsample_rows
        self.numeric_transforms = numeric_transforms
        self.random_state = random_state
        self.device = device
        self.ignore_pretraining_limits = ignore_pretraining_limits
        self.max_memory_mb = max_memory_mb

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = False
        tags.non_deterministic = False
        return tags

    # ----------------------------------------------------------------------------------- fitting
    def _fit_context(self, X, rng: np.random.RandomState, *, merge_identical: bool = False) -> None:
        """Load the model, check limits, fit the members' views and store the context inputs.

        With ``merge_identical`` (members that differ only by their view), members whose views coincide
        (e.g. every permutation of a single feature) run once, weighted by how many they stand for.
        """
        if not isinstance(self.n_estimators, (int, np.integer)) or self.n_estimators < 1:
            raise ValueError(f"n_estimators must be a positive integer, got {self.n_estimators!r}")
        check_float(self.max_memory_mb, "max_memory_mb", minimum=0, open_minimum=True)
        transforms = self.numeric_transforms
        if isinstance(transforms, str) or not transforms or any(t not in NUMERIC_TRANSFORMS for t in transforms):
            raise ValueError(f"numeric_transforms must be a sequence of {NUMERIC_TRANSFORMS}, got {transforms!r}")
        if self.subsample_rows is not None and (
            not isinstance(self.subsample_rows, (int, np.integer)) or self.subsample_rows < 2
        ):
            raise ValueError(f"subsample_rows must be None or an integer >= 2, got {self.subsample_rows!r}")
        self.model_ = self._load_model()
        num_rows, num_features = X.shape
        max_features = self.model_.network.max_features
        if num_rows > MAX_TRAIN_ROWS:
            self._limit("training rows", num_rows, MAX_TRAIN_ROWS)
        if num_features > max_features:
            self._limit("features", num_features, max_features)
        self.encoder_ = TableEncoder()
        self.encoder_.column_names = getattr(self, "feature_names_in_", None)
        encoded = self.encoder_.fit_transform(X)
        warn_heavy_tails(encoded, self.encoder_.categorical_, self.encoder_.column_names)
        self.domain_ = table_domain(encoded, self.encoder_.categorical_)  # what queries are checked against
        # columns constant on the training rows carry no information; the network never sees them
        informative = np.flatnonzero(np.ptp(encoded, axis=0) > 0) if num_rows else np.arange(num_features)
        informative = informative if informative.size else np.arange(1)
        self.members_: list[MemberView] = []
        counts: dict[tuple, int] = {}
        for index in range(self.n_estimators):
            if informative.size > max_features:  # only with ignore_pretraining_limits: a random subset per member
                order = np.sort(rng.choice(informative, max_features, replace=False))
            else:
                order = informative
            order = rng.permutation(order) if index else order
            transform = self.numeric_transforms[index % len(self.numeric_transforms)]
            key = (transform, tuple(order)) if merge_identical else (index,)
            if key not in counts:
                self.members_.append(MemberView(transform, order, self.encoder_.categorical_).fit(encoded))
            counts[key] = counts.get(key, 0) + 1
        self.member_weights_ = torch.tensor(list(counts.values()), dtype=torch.float64) / self.n_estimators
        # (E, r) training rows each member conditions on: all of them, or a random subset of subsample_rows
        if self.subsample_rows is not None and num_rows > self.subsample_rows:
            rows = [np.sort(rng.choice(num_rows, self.subsample_rows, replace=False)) for _ in self.members_]
            self.context_rows_ = np.stack(rows)
        else:
            self.context_rows_ = np.broadcast_to(np.arange(num_rows), (len(self.members_), num_rows))
        # a copy: the rows may be a read-only broadcast view, which torch warns about
        rows = torch.as_tensor(np.array(self.context_rows_), device=self.device)
        views = self._views(encoded)
        self.context_x_ = views.gather(1, rows.unsqueeze(-1).expand(-1, -1, views.shape[-1]))

    def _set_context_y(self, y_context: np.ndarray) -> None:
        """Context targets from (E, n) training targets, one row per member (restricted to its rows)."""
        y_context = np.take_along_axis(np.asarray(y_context), self.context_rows_, axis=1)
        self.context_y_ = torch.tensor(y_context, dtype=torch.float32, device=self.device)
        # the members' contexts through every layer once: predictions then cost only the queries
        network = self.model_.network
        self.context_cache_ = network.encode_context(self.context_x_, self.context_y_) if self.cache_context else None

    @property
    def card(self):
        """The checkpoint's :class:`~priorfit.card.CalibrationCard` (calibration on held-out prior tables, training
        domain and budget), or None for a file without one; fitted or not."""
        return self._load_model().card

    def _load_model(self) -> PFNModel:
        name = self.checkpoint if self.checkpoint is not None else self._default_checkpoint
        model = cached_pfn(name, str(self.device))
        if model.objective != self._objective:
            raise PriorfitValidationError(
                f"checkpoint {name!r} is a {model.objective} PFN; {type(self).__name__} needs a {self._objective} one"
            )
        return model

    def _limit(self, what: str, value: int, limit: int) -> None:
        if not self.ignore_pretraining_limits:
            raise PretrainingLimitError(
                f"{value} {what} exceed this checkpoint's pretraining limit of {limit}; predictions past it are "
                f"untested. Pass ignore_pretraining_limits=True to {type(self).__name__} to run anyway"
                + (" (each ensemble member then sees a random subset of the features)" if what == "features" else "")
            )

    def _views(self, encoded: np.ndarray) -> torch.Tensor:
        """(E, rows, features) float32 tensor: every member's view of an encoded table."""
        views = np.stack([member.transform(encoded) for member in self.members_])
        return torch.as_tensor(views, dtype=torch.float32, device=self.device)

    # ------------------------------------------------------------------------------- prediction
    def _validate_query(self, X) -> torch.Tensor:
        check_is_fitted(self, "members_")
        X = validate_data(self, check_table(X), reset=False, dtype=None, ensure_all_finite="allow-nan")
        encoded = self.encoder_.transform(X)
        if np.isinf(encoded).any():
            raise ValueError("X contains infinity; replace it (NaN is allowed and imputed)")
        self.domain_.check("feature", encoded, advice=EXTRAPOLATION_ADVICE)
        return self._views(encoded)

    def _query_chunk_rows(self) -> int:
        """Query rows per forward pass so that activations stay under ``max_memory_mb``."""
        network = self.model_.network
        layer = network.layers[0]
        d_model, d_ff = layer.to_q.in_features, layer.ff[0].out_features
        members, num_context = self.context_x_.shape[:2]
        # per token: residual, normed, q/k/v, attention output, MLP hidden, output logits (float32), and the
        # double-precision copy the regressor averages members in; per query token also its row of attention
        # weights when SDPA falls back to the math kernel. Without a context cache the context runs again too.
        per_token = 4 * members * (6 * d_model + d_ff + 3 * network.num_outputs)
        per_query = per_token + 4 * members * layer.n_heads * num_context
        free = self.max_memory_mb * 2**20 - (0 if self.context_cache_ is not None else per_token * num_context)
        return max(1, int(free // (2 * per_query)))  # x2: headroom for temporaries

    @torch.no_grad()
    def _member_logit_chunks(self, x_query: torch.Tensor) -> Iterator[torch.Tensor]:
        """(E, c, K) logits of every member for successive memory-bounded chunks of the query rows."""
        chunk = self._query_chunk_rows()
        if self.context_cache_ is not None:  # whole blocks per chunk: answers independent of the chunking
            chunk = max(QUERY_BLOCK, chunk - chunk % QUERY_BLOCK)
        for start in range(0, x_query.shape[1], chunk):
            part = x_query[:, start : start + chunk]
            if self.context_cache_ is not None:
                yield self.model_.network.forward_cached(self.context_cache_, part, row_block=QUERY_BLOCK)
            else:
                yield self.model_(self.context_x_, self.context_y_, part)

    def _member_logits(self, x_query: torch.Tensor) -> torch.Tensor:
        """(E, m, K) logits of every member for every query row."""
        return torch.cat(list(self._member_logit_chunks(x_query)), dim=1)

    def _fit_input(self, X, y, **kwargs):
        check_device(self.device)
        X = check_table(X)
        return validate_data(self, X, y, dtype=None, ensure_all_finite="allow-nan", ensure_min_samples=2, **kwargs)


class PFNClassifier(ClassifierMixin, _TabularPFN):
    """Classifier backed by a pretrained tabular PFN (default checkpoint ``tabular-clf-small``).

    Args:
        checkpoint: registered name or path of a classification PFN checkpoint.
        n_estimators: ensemble members (feature shuffles, class-label permutations, numeric
            transforms); their predictive probabilities are averaged.
        random_state: seeds the members' permutations; fixed by default, so results are deterministic.
        device: torch device for inference.
        ignore_pretraining_limits: run on more features / rows than the checkpoint was trained for.
        max_memory_mb: bound on activation memory per forward pass; queries are chunked to fit.
        subsample_rows: each member conditions on its own random subset of this many training rows
            (bagging): cheaper on large tables, and the members differ more. None: all rows.
        numeric_transforms: the members' numeric preprocessing, cycled over members ("standard",
            "robust", "quantile"). The default is mostly z-scores, with a quarter of the members on the
            quantile transform for heavy-tailed features (it hurts integer-valued features such as digits').
        cache_context: at ``fit``, run the members' training rows through the network once and keep every layer's
            keys and values (about ``4 · layers · 2 · d_model · members · rows`` bytes: 32 MB for 1,000 rows), so
            each ``predict`` runs only the queries; False recomputes the context for every chunk of queries.

    Example:
        >>> from sklearn.datasets import load_iris
        >>> X, y = load_iris(return_X_y=True)
        >>> clf = PFNClassifier().fit(X[::2], y[::2])
        >>> clf.predict_proba(X[1::2]).shape
        (75, 3)
    """

    _objective = "classification"
    _default_checkpoint = "tabular-clf-small"

    def fit(self, X, y) -> PFNClassifier:
        X, y = self._fit_input(X, y)
        check_classification_targets(y)
        self.label_encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.label_encoder_.classes_
        labels = self.label_encoder_.transform(y)
        num_classes = len(self.classes_)
        rng = check_random_state(self.random_state)
        self._fit_context(X, rng)
        max_classes = self.model_.head.num_classes
        if num_classes > max_classes:
            # a head has a fixed number of class logits: this limit cannot be lifted
            raise PretrainingLimitError(
                f"{num_classes} classes exceed this checkpoint's limit of {max_classes} (its output layer has "
                f"{max_classes} class logits); train a checkpoint with more classes (task.num_classes)"
            )
        # member 0 sees the labels as given, the others through a random relabelling each
        self.class_permutations_ = np.stack(
            [np.arange(num_classes)] + [rng.permutation(num_classes) for _ in range(self.n_estimators - 1)]
        )
        self._set_context_y(self.class_permutations_[:, labels])  # (E, n): member e's labels
        return self

    def predict_proba(self, X) -> np.ndarray:
        """(n_queries, n_classes) class probabilities, columns in the order of ``classes_``."""
        x_query = self._validate_query(X)
        num_classes = len(self.classes_)
        if num_classes == 1:
            return np.ones((x_query.shape[1], 1))
        logits = self._member_logits(x_query)[..., :num_classes]  # (E, m, k): only the classes that exist
        probs = logits.double().softmax(-1)
        # member e showed class c as label perm[e, c]: read its column perm[e, c] back as class c
        index = torch.as_tensor(self.class_permutations_, device=probs.device)
        probs = probs.gather(2, index.unsqueeze(1).expand(-1, probs.shape[1], -1))
        return (probs * self.member_weights_.to(probs.device).view(-1, 1, 1)).sum(0).cpu().numpy()

    def predict(self, X) -> np.ndarray:
        """Most probable class of each query row (labels as given to ``fit``)."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(1)]

    def predict_log_proba(self, X) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))


OutputType = Literal["mean", "median", "mode", "quantiles", "full"]


class PFNRegressor(RegressorMixin, _TabularPFN):
    """Regressor backed by a pretrained tabular PFN (default checkpoint ``tabular-reg-small``).

    The prediction for each row is a whole distribution (a bar distribution in standardised target
    units, mapped back); ``predict`` reads a point or quantiles off it, ``predict_log_density``
    evaluates it. Arguments as for :class:`PFNClassifier`.

    Example:
        >>> from sklearn.datasets import load_diabetes
        >>> X, y = load_diabetes(return_X_y=True)
        >>> reg = PFNRegressor().fit(X[:300], y[:300])
        >>> reg.predict_quantiles(X[300:], [0.05, 0.95]).shape
        (142, 2)
    """

    _objective = "regression"
    _default_checkpoint = "tabular-reg-small"

    def fit(self, X, y) -> PFNRegressor:
        if y is not None and not _is_numeric(y):
            raise PriorfitValidationError("y must be numeric for a regressor (use PFNClassifier for labels)")
        X, y = self._fit_input(X, y, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            self.y_mean_, spread = float(y.mean()), float(y.std())
        if not (np.isfinite(self.y_mean_) and np.isfinite(spread) and np.abs(y).max() < 1e150):
            raise PriorfitValidationError(
                f"y is too large to standardise in floating point (largest |y| = {np.abs(y).max():.3g}); rescale it "
                "first (e.g. divide by a power of ten) and scale the predictions back"
            )
        self.y_scale_ = spread if spread > 1e-12 * max(1.0, abs(self.y_mean_)) else 1.0
        standardized = (y - self.y_mean_) / self.y_scale_
        self._fit_context(X, check_random_state(self.random_state), merge_identical=True)
        self._set_context_y(np.broadcast_to(standardized, (len(self.members_), len(y))))
        # float64 copy of the bucket borders: quantiles and densities are read off in double precision
        self.head_ = BarDistribution(self.model_.head.borders.double())
        borders = self.head_.borders
        TrainingDomain({"standardised y": [float(borders[0]), float(borders[-1])]}).check(
            "standardised y",
            torch.as_tensor(standardized),
            advice="y has outliers beyond the range of the prior's targets: transform y (e.g. log) or check them.",
        )
        return self

    def _averaged_logit_chunks(self, x_query: torch.Tensor) -> Iterator[torch.Tensor]:
        """(c, K) log of the members' averaged bucket probabilities (standardised units), chunk by chunk of the
        (validated) query rows, so that no (members, rows, buckets) array of all the queries is ever held."""
        log_weights = self.member_weights_.log().view(-1, 1, 1)
        for logits in self._member_logit_chunks(x_query):
            logits = logits.double()
            yield (logits.log_softmax(-1) + log_weights.to(logits.device)).logsumexp(0)

    def predict(self, X, *, output_type: OutputType = "mean", quantiles=DEFAULT_QUANTILES) -> Any:
        """Point predictions (``"mean"``, ``"median"``, ``"mode"``), ``"quantiles"`` (list of arrays, one
        per level), or ``"full"``: a dict of all of them plus ``"borders"`` and ``"probabilities"``
        (bucket edges in target units and each row's bucket probabilities).

        The mean counts each tail bucket at a tail continuing its neighbour's density
        (:meth:`~priorfit.networks.BarDistribution.bounded_mean`), not at the wide half-normal the density
        uses, so a query the model extrapolates to gets a mean that stays near the prior's target range instead
        of one dragged far past its median by tail mass."""
        if output_type not in ("mean", "median", "mode", "quantiles", "full"):
            raise PriorfitValidationError(
                f"output_type must be mean, median, mode, quantiles or full, got {output_type!r}"
            )
        levels = _check_quantiles(quantiles)
        wanted = ["mean", "median", "mode", "quantiles", "probabilities"] if output_type == "full" else [output_type]
        # read each chunk's outputs off as it comes: memory stays bounded for any number of query rows
        x_query = self._validate_query(X)
        parts = [self._read_off(logits, wanted, levels) for logits in self._averaged_logit_chunks(x_query)]
        merged = {
            name: [np.concatenate(values) for values in zip(*(p[name] for p in parts))]
            if name == "quantiles"
            else np.concatenate([p[name] for p in parts])
            for name in wanted
        }
        if output_type != "full":
            return merged[output_type]
        return {**merged, "borders": self._unscale(self.head_.borders)}

    def _unscale(self, values: torch.Tensor) -> np.ndarray:
        return (values * self.y_scale_ + self.y_mean_).cpu().numpy()

    def _read_off(self, logits: torch.Tensor, wanted: list[str], levels: list[float]) -> dict:
        """The requested outputs of (c, K) averaged log bucket probabilities, in target units."""
        head, out = self.head_, {}
        if "mean" in wanted:
            out["mean"] = self._unscale(head.bounded_mean(logits))
        if "median" in wanted:
            out["median"] = self._unscale(head.quantile(logits, 0.5))
        if "mode" in wanted:
            centers = (head.borders[1:] + head.borders[:-1]) / 2
            out["mode"] = self._unscale(centers[(logits.exp() / head.widths).argmax(-1)])
        if "quantiles" in wanted:
            out["quantiles"] = [self._unscale(head.quantile(logits, q)) for q in levels]
        if "probabilities" in wanted:
            out["probabilities"] = logits.exp().cpu().numpy()
        return out

    def predict_quantiles(self, X, quantiles=DEFAULT_QUANTILES) -> np.ndarray:
        """(n_queries, len(quantiles)) predictive quantiles."""
        return np.stack(self.predict(X, output_type="quantiles", quantiles=quantiles), axis=1)

    def predict_log_density(self, X, y) -> np.ndarray:
        """log p(y_i | x_i, training data) for each query row, in the units of y."""
        try:
            y = np.asarray(y, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise PriorfitValidationError("y must be numeric (one value per query row)") from None
        x_query = self._validate_query(X)
        num_rows = x_query.shape[1]
        if len(y) != num_rows:
            raise PriorfitValidationError(f"X has {num_rows} rows but y has {len(y)} values")
        if not np.isfinite(y).all():
            raise PriorfitValidationError("y contains NaN or infinity")
        standardized = torch.as_tensor((y - self.y_mean_) / self.y_scale_, dtype=torch.float64)
        parts, start = [], 0
        for logits in self._averaged_logit_chunks(x_query):
            rows = standardized[start : start + len(logits)].to(logits.device)
            parts.append(self.head_.log_density(logits, rows).cpu().numpy())
            start += len(logits)
        return np.concatenate(parts) - math.log(self.y_scale_)


def _is_numeric(values) -> bool:
    try:
        np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True


def _check_quantiles(quantiles) -> list[float]:
    try:
        levels = [float(q) for q in np.atleast_1d(quantiles)]
    except (TypeError, ValueError):
        levels = []
    if not levels or not all(0.0 < q < 1.0 for q in levels):
        raise PriorfitValidationError(f"quantiles must lie strictly between 0 and 1, got {quantiles!r}")
    return levels
