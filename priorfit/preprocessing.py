"""Tabular preprocessing for the PFN estimators: encode a user's table, then one view per ensemble member.

Everything is fitted on the training rows only. ``TableEncoder`` turns a numeric array or a pandas
DataFrame (string / categorical / boolean columns allowed, NaN allowed) into a float matrix with
categorical columns as ordinal codes. ``MemberView`` is one ensemble member's view of it: a numeric
transform (standardisation with clipping, or a quantile transform to a normal), a feature
permutation and, past the feature limit, a feature subset.
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import OrdinalEncoder, QuantileTransformer, RobustScaler, StandardScaler

from priorfit.domain import TrainingDomain, warn_out_of_domain
from priorfit.errors import PriorfitTypeError, PriorfitValidationError

__all__ = ["TableEncoder", "MemberView", "NUMERIC_TRANSFORMS", "check_table", "table_domain", "warn_heavy_tails"]

NUMERIC_TRANSFORMS = ("standard", "robust", "quantile")
# categorical codes are passed as 0..L-1 like the SCM prior's; columns with more levels are treated as numbers
MAX_CATEGORICAL_LEVELS = 16
CLIP = 5.0


_TIME_TYPES = (datetime.date, datetime.time, datetime.timedelta, np.datetime64, np.timedelta64)


def check_table(X: Any) -> Any:
    """A user's table made safe to encode: dates and times refused by column, pandas' nullable columns
    (``Int64``, ``Float64``, ``boolean`` with ``pd.NA``) turned into floats with NaN for missing."""
    if hasattr(X, "iloc") and hasattr(X, "dtypes"):  # a pandas DataFrame
        converted = {}
        for name, dtype in X.dtypes.items():
            if getattr(dtype, "kind", "") in "mM" or "datetime" in str(dtype) or "period" in str(dtype).lower():
                raise _time_column(repr(name), str(dtype))
            if _is_nullable_number(dtype):
                converted[name] = X[name].to_numpy(dtype=np.float64, na_value=np.nan)
            elif getattr(dtype, "kind", "") == "O":
                _refuse_times(X[name].to_numpy(), repr(name))
        return X.assign(**converted) if converted else X
    array = X if isinstance(X, np.ndarray) else np.asarray(X)
    if array.dtype.kind in "mM":
        raise _time_column("(all columns)", str(array.dtype))
    if array.dtype.kind == "O" and array.ndim == 2:
        for index in range(array.shape[1]):
            _refuse_times(array[:, index], f"{index}")
    return X


def _is_nullable_number(dtype) -> bool:
    return str(dtype) in ("boolean", "Float32", "Float64") or str(dtype).startswith(("Int", "UInt"))


def _refuse_times(column: np.ndarray, name: str) -> None:
    if any(isinstance(value, _TIME_TYPES) for value in column):
        raise _time_column(name, "date/time objects")


def _time_column(name: str, kind: str) -> PriorfitValidationError:
    return PriorfitValidationError(
        f"column {name} holds dates or times ({kind}); the PFN reads numbers and categories only. Convert it "
        "first (e.g. days since a reference date, or day of week as a category) or drop it."
    )


def _is_categorical_dtype(dtype) -> bool:
    kind = getattr(dtype, "kind", "O")
    return kind in "OSUb" or str(dtype) in ("category", "string", "boolean", "str")


class TableEncoder:
    """Ordinal-encodes non-numeric columns and imputes missing values (medians / most frequent).

    ``fit_transform(X)`` on the training table, ``transform(X)`` on query tables; unseen
    categories and NaN become the imputed value. ``categorical_`` marks the encoded columns.
    """

    column_names: np.ndarray | None = None  # the table's column names, where it had any (for error messages)

    def fit(self, X) -> TableEncoder:
        columns = _columns(X)
        self.categorical_ = np.array([_is_categorical_dtype(np.asarray(col).dtype) for col in columns], dtype=bool)
        if self.categorical_.any():
            self.ordinal_ = OrdinalEncoder(
                handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan
            ).fit(np.stack([_strings(col) for col, is_cat in zip(columns, self.categorical_) if is_cat], axis=1))
        numeric = self._encode(columns)
        self.imputer_ = SimpleImputer(strategy="median", keep_empty_features=True).fit(numeric)
        return self

    def transform(self, X) -> np.ndarray:
        return self.imputer_.transform(self._encode(_columns(X))).astype(np.float64)

    def fit_transform(self, X) -> np.ndarray:
        return self.fit(X).transform(X)

    def _encode(self, columns: list[np.ndarray]) -> np.ndarray:
        out = np.empty((len(columns[0]), len(columns)), dtype=np.float64)
        categorical = [i for i, is_cat in enumerate(self.categorical_) if is_cat]
        if categorical:
            codes = self.ordinal_.transform(np.stack([_strings(columns[i]) for i in categorical], axis=1))
            out[:, categorical] = codes
        for i, is_cat in enumerate(self.categorical_):
            if not is_cat:
                try:
                    out[:, i] = np.asarray(columns[i], dtype=np.float64)
                except (TypeError, ValueError):
                    bad = next(v for v in columns[i] if not _is_number(v))
                    name = repr(self.column_names[i]) if self.column_names is not None else i
                    raise PriorfitValidationError(
                        f"column {name} was numeric in fit but holds {bad!r:.40}: give numbers there (NaN for missing)"
                    ) from None
        return out


def _columns(X) -> list[np.ndarray]:
    if hasattr(X, "iloc"):  # pandas DataFrame: keep each column's own dtype
        return [X.iloc[:, i].to_numpy() for i in range(X.shape[1])]
    array = np.asarray(X)
    if array.dtype.kind == "O":  # a mixed object array: numeric-looking columns become numbers
        return [_maybe_numeric(array[:, i]) for i in range(array.shape[1])]
    return [array[:, i] for i in range(array.shape[1])]


def _maybe_numeric(column: np.ndarray) -> np.ndarray:
    try:
        return column.astype(np.float64)
    except (TypeError, ValueError):
        return column


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _strings(column: np.ndarray) -> np.ndarray:
    """Categories as strings, with None/NaN kept as NaN so the encoder treats them as missing."""
    cells = []
    for value in column:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            cells.append(np.nan)
        elif isinstance(value, (str, bytes, bool, int, float, np.generic)):
            cells.append(str(value))
        else:
            raise PriorfitTypeError(
                f"table cells must be numbers or strings (argument must be a string or a number), "
                f"got a {type(value).__name__}: {value!r:.40}"
            )
    return np.array(cells, dtype=object)


class MemberView:
    """One ensemble member's fixed transform of an encoded table (fitted on the training rows).

    Args:
        numeric_transform: "standard" (z-score), "robust" (median / interquartile range) or "quantile" (to a
            standard normal); the first two are clipped at ±5.
        feature_order: column indices in the order the member shows them (a permutation, or a
            subset when the table has more features than the network takes).
        categorical: which encoded columns hold categorical codes (passed through as codes).
    """

    def __init__(
        self,
        numeric_transform: Literal["standard", "robust", "quantile"],
        feature_order: np.ndarray,
        categorical: np.ndarray,
    ) -> None:
        self.numeric_transform = numeric_transform
        self.feature_order = feature_order
        self.categorical = categorical

    def fit(self, X: np.ndarray) -> MemberView:
        levels = np.array([len(np.unique(col)) for col in X.T]) if X.size else np.zeros(X.shape[1])
        self.as_codes_ = self.categorical & (levels <= MAX_CATEGORICAL_LEVELS)
        numeric = X[:, ~self.as_codes_]
        if self.numeric_transform == "quantile":
            quantiles = max(2, min(1000, X.shape[0]))
            self.scaler_ = QuantileTransformer(n_quantiles=quantiles, output_distribution="normal").fit(numeric)
        elif self.numeric_transform == "robust":
            self.scaler_ = RobustScaler().fit(numeric)
        else:
            self.scaler_ = StandardScaler().fit(numeric)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        out = X.astype(np.float64, copy=True)
        if (~self.as_codes_).any():
            out[:, ~self.as_codes_] = np.clip(self.scaler_.transform(X[:, ~self.as_codes_]), -CLIP, CLIP)
        return out[:, self.feature_order]


# the prior's tables have about 0.02 % of feature values beyond ±CLIP standard deviations of their table
# (benchmarks/prior_tables.py: 64 tables of 256 rows of each bundled tabular prior); a user's column with more than
# HEAVY_TAIL_FRACTION of them, 50 times that, is unlike anything the network was trained on
HEAVY_TAIL_FRACTION = 0.01
EXTRAPOLATION_MARGIN = 0.1  # query values beyond the training rows' range by this fraction of it extrapolate


def table_domain(encoded: np.ndarray, categorical: np.ndarray) -> TrainingDomain:
    """The feature ranges queries are checked against: each numeric column's training range widened by
    ``EXTRAPOLATION_MARGIN`` of its width on both sides (categorical columns: any code)."""
    low, high = np.nanmin(encoded, axis=0), np.nanmax(encoded, axis=0)
    margin = EXTRAPOLATION_MARGIN * (high - low)
    low = np.where(categorical, -np.inf, low - margin)
    high = np.where(categorical, np.inf, high + margin)
    return TrainingDomain({"feature": [low.tolist(), high.tolist()]})


def warn_heavy_tails(encoded: np.ndarray, categorical: np.ndarray, names: np.ndarray | None) -> None:
    """An :class:`~priorfit.errors.OutOfDomainWarning` for numeric columns with more than ``HEAVY_TAIL_FRACTION``
    of their values beyond ±CLIP standard deviations: the prior's tables (almost) never have such values, and the
    standardising ensemble members clip them."""
    numeric = encoded[:, ~categorical]
    if numeric.shape[0] < 2 or numeric.shape[1] == 0:
        return
    spread = numeric.std(0)
    z = np.abs(numeric - numeric.mean(0)) / np.where(spread > 0, spread, 1.0)
    fractions = (z > CLIP).mean(0)
    worst = int(np.argmax(fractions))
    if fractions[worst] > HEAVY_TAIL_FRACTION:
        column = int(np.flatnonzero(~categorical)[worst])
        name = repr(names[column]) if names is not None else column
        warn_out_of_domain(
            f"feature {name}: {fractions[worst]:.1%} of its values lie beyond {CLIP:g} standard deviations from its "
            f"mean, where the prior's tables have about 0.02 %: predictions lean on values the network was "
            "never shown. Transform the column (e.g. log) or use numeric_transforms=('quantile',)."
        )
