"""The allow list of classes a stored configuration may name, and the one builder that reads such configurations.

A checkpoint is data, never code. Its configuration (``{"_target_": "priorfit.priors.GPPrior", ...}``) is
rebuilt here, not by ``hydra.utils.instantiate``: a ``_target_`` must be one of priorfit's own prior and
network families below, or a name the caller passed in ``trusted_targets`` (the user's own prior class);
every nested dict is checked the same way; size arguments (``n_layers``, ``d_model``, ``num_buckets``...)
must be integers within :data:`SIZE_LIMITS`, so metadata cannot make the loader allocate without bound.

Adding a network or prior family means adding one line to :data:`FAMILIES`. Importing this module imports
neither Lightning nor Hydra; constructors are imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

from priorfit.errors import InvalidHyperparameterError, UntrustedTargetError

__all__ = [
    "FAMILIES",
    "SIZE_LIMITS",
    "build",
    "canonical_name",
    "posterior_kinds",
    "check_config",
    "check_size",
    "targets_in",
    "resolve_target",
]

# name as written in configs and checkpoints -> "module:attribute" of its constructor
FAMILIES: dict[str, str] = {
    # priors
    "priorfit.priors.GPPrior": "priorfit.priors.gp:GPPrior",
    "priorfit.priors.BNNPrior": "priorfit.priors.bnn:BNNPrior",
    "priorfit.priors.SCMPrior": "priorfit.priors.scm:SCMPrior",
    "priorfit.priors.PriorMixture": "priorfit.priors.mixture:PriorMixture",
    "priorfit.priors.ExactRelationPrior": "priorfit.priors.relations:ExactRelationPrior",
    "priorfit.priors.LearningCurvePrior": "priorfit.priors.learning_curves:LearningCurvePrior",
    "priorfit.priors.RandomGMMPrior": "priorfit.priors.gmm:RandomGMMPrior",
    "priorfit.priors.simulators.simulator_prior": "priorfit.priors.simulators:simulator_prior",
    # networks
    "priorfit.networks.PFNTransformer": "priorfit.networks.transformer:PFNTransformer",
    "priorfit.networks.DistributionTransformer": "priorfit.networks.distribution_transformer:DistributionTransformer",
    "priorfit.networks.posterior.FlowPosterior": "priorfit.networks.posterior:FlowPosterior",
    "priorfit.networks.posterior.GMMPosterior": "priorfit.networks.posterior:GMMPosterior",
    "priorfit.networks.flow_matching.FlowMatchingPosterior": "priorfit.networks.flow_matching:FlowMatchingPosterior",
    "priorfit.networks.score.ScoreNetwork": "priorfit.networks.score:ScoreNetwork",
    "priorfit.networks.ensemble.EnsemblePosterior": "priorfit.networks.ensemble:EnsemblePosterior",
}
# the defining modules' spellings of the same classes (``priorfit.priors.gp.GPPrior``) are accepted too
_ALIASES = {spec.replace(":", "."): name for name, spec in FAMILIES.items()}

# size arguments, wherever they appear in a configuration: (smallest, largest) accepted integer
SIZE_LIMITS: dict[str, tuple[int, int]] = {
    # transformers and set encoders
    "n_layers": (0, 64),
    "layers": (0, 64),
    "d_model": (1, 8192),
    "width": (1, 8192),
    "n_heads": (1, 256),
    "heads": (1, 256),
    "d_ff": (1, 65536),
    "embed_dim": (1, 8192),
    "decoder_hidden": (1, 65536),
    "hidden": (1, 65536),
    "transforms": (1, 64),
    "passes": (1, 1024),
    "time_dim": (2, 8192),
    "bins": (1, 1024),
    "components": (1, 1024),
    "group_size": (1, 100_000),
    "max_features": (1, 100_000),
    "num_outputs": (1, 100_000),
    "y_dim": (1, 1024),
    "theta_dim": (1, 100_000),
    "x_dim": (1, 100_000),
    "max_components": (1, 1024),
    "output_components": (1, 1024),
    # heads and tasks
    "num_buckets": (2, 100_000),
    "num_classes": (2, 10_000),
    "border_datasets": (1, 1_000_000),
    "border_points": (1, 100_000),
    "fisher_samples": (1, 10_000),
    # priors
    "num_features": (1, 100_000),
    "max_classes": (2, 10_000),
    "max_depth": (0, 64),
    "min_width": (1, 65536),
    "max_width": (1, 65536),
    "num_epochs": (1, 100_000),
    "dim": (1, 100_000),
    "min_components": (1, 1024),
    "num_lengthscales": (1, 10_000),
    "num_iid": (1, 1_000_000),
}
MAX_DEPTH = 16  # nesting of dicts and lists in one configuration
MAX_ITEMS = 4096  # entries of one dict or list
MAX_STRING = 4096  # characters of one string
MAX_SIZE_ITEMS = 64  # entries of a list of sizes (``hidden: [128, 128]``)


def canonical_name(name: Any) -> Any:
    """The allow list's name of a family (``priorfit.priors.gp.GPPrior`` -> ``priorfit.priors.GPPrior``); other
    values unchanged."""
    return _ALIASES.get(name, name) if isinstance(name, str) else name


def posterior_kinds() -> dict[str, str]:
    """``AmortizedPosterior`` estimator name -> family name, for every network family that declares an
    ``estimator`` (so a new posterior family needs only its line in :data:`FAMILIES`). Imports every family's module
    (torch only)."""
    kinds = {}
    for name in FAMILIES:
        constructor = resolve_target(name)
        estimator = getattr(constructor, "estimator", None)
        if isinstance(constructor, type) and isinstance(estimator, str):
            kinds[estimator] = name
    return kinds


def resolve_target(name: str, trusted_targets: Collection[str] = ()) -> Callable[..., Any]:
    """The constructor a ``_target_`` names: an allow-listed family, or a name the caller trusts explicitly."""
    if not isinstance(name, str):
        raise UntrustedTargetError(f"_target_ must be a class name (a string), got {type(name).__name__}")
    canonical = canonical_name(name)
    if canonical in FAMILIES:
        module, attribute = FAMILIES[canonical].split(":")
        return getattr(importlib.import_module(module), attribute)
    if name in trusted_targets:
        return _import_dotted(name)
    raise UntrustedTargetError(
        f"refusing to build {name!r}: it is not one of priorfit's own prior or network classes, and a stored "
        f"configuration may only name those (a checkpoint is data, never code). If {name!r} is your own prior "
        f"class and you trust this file, pass it explicitly, e.g. priorfit.load(path, "
        f"trusted_targets={{{name!r}}}); its module must be importable."
    )


def check_config(config: Any, *, trusted_targets: Collection[str] = (), where: str = "config") -> None:
    """Raise unless every ``_target_`` in ``config`` is allowed and every value is plain, small and in bounds.

    Checks only: nothing is imported or built.
    """
    _check(config, where, 0, trusted_targets)


def build(config: Mapping[str, Any], *, trusted_targets: Collection[str] = (), **extra: Any) -> Any:
    """Construct the object a ``{"_target_": name, **arguments}`` configuration describes (nested ones first).

    ``extra`` keyword arguments (sizes the caller derived, e.g. ``num_outputs``) are checked like stored ones
    and override them.
    """
    if not isinstance(config, Mapping) or "_target_" not in config:
        raise InvalidHyperparameterError(f"expected a configuration with a _target_, got {config!r:.200}")
    merged = {**config, **extra}
    check_config(merged, trusted_targets=trusted_targets)
    return _build(merged, trusted_targets)


def targets_in(config: Any) -> set[str]:
    """Every ``_target_`` named anywhere in a (plain) configuration: what a command-line config trusts."""
    if isinstance(config, Mapping):
        found = {config["_target_"]} if isinstance(config.get("_target_"), str) else set()
        for value in config.values():
            found |= targets_in(value)
        return found
    if isinstance(config, (list, tuple)):
        return set().union(*(targets_in(value) for value in config)) if config else set()
    return set()


def _build(config: Any, trusted_targets: Collection[str]) -> Any:
    if isinstance(config, Mapping):
        values = {key: _build(value, trusted_targets) for key, value in config.items() if key != "_target_"}
        if "_target_" not in config:
            return values
        constructor = resolve_target(config["_target_"], trusted_targets)
        try:
            return constructor(**values)
        except TypeError as error:  # a missing or unknown argument: name the class
            raise InvalidHyperparameterError(f"{config['_target_']}: {error}") from None
    if isinstance(config, (list, tuple)):
        return [_build(value, trusted_targets) for value in config]
    return config


def _check(value: Any, where: str, depth: int, trusted_targets: Collection[str]) -> None:
    if depth > MAX_DEPTH:
        raise InvalidHyperparameterError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        if len(value) > MAX_ITEMS:
            raise InvalidHyperparameterError(f"{where}: {len(value)} entries (at most {MAX_ITEMS})")
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidHyperparameterError(f"{where}: keys must be strings, got {key!r:.50}")
            if key == "_target_":
                _require_allowed(item, trusted_targets)
            elif key.startswith("_") and key.endswith("_"):  # Hydra's _args_, _partial_, _recursive_, _convert_
                raise UntrustedTargetError(f"{where}: the key {key!r} is not accepted in a stored configuration")
            else:
                _check(item, f"{where}.{key}", depth + 1, trusted_targets)
                check_size(key, item, where=f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        if len(value) > MAX_ITEMS:
            raise InvalidHyperparameterError(f"{where}: {len(value)} items (at most {MAX_ITEMS})")
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]", depth + 1, trusted_targets)
    elif isinstance(value, str):
        if len(value) > MAX_STRING:
            raise InvalidHyperparameterError(f"{where}: a string of {len(value)} characters (at most {MAX_STRING})")
    elif value is not None and not isinstance(value, (bool, int, float)):
        raise InvalidHyperparameterError(f"{where}: {type(value).__name__} values are not accepted")


def _require_allowed(name: Any, trusted_targets: Collection[str]) -> None:
    """Raise ``UntrustedTargetError`` unless ``name`` is allow-listed or trusted (imports nothing)."""
    if isinstance(name, str) and (canonical_name(name) in FAMILIES or name in trusted_targets):
        return
    resolve_target(name, trusted_targets)  # raises with the full explanation


def check_size(key: str, value: Any, *, where: str | None = None) -> None:
    """Raise unless a size argument named ``key`` is an integer (or list of them) within ``SIZE_LIMITS[key]``."""
    where = key if where is None else where
    if key not in SIZE_LIMITS or value is None:
        return
    low, high = SIZE_LIMITS[key]
    items = value if isinstance(value, (list, tuple)) else [value]
    if len(items) > MAX_SIZE_ITEMS:
        raise InvalidHyperparameterError(f"{where}: {len(items)} sizes (at most {MAX_SIZE_ITEMS})")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise InvalidHyperparameterError(f"{where} must be an integer (or a list of integers), got {item!r:.50}")
        if not low <= item <= high:
            raise InvalidHyperparameterError(f"{where} = {item} is outside the accepted range [{low}, {high}]")


def _import_dotted(name: str) -> Callable[..., Any]:
    """``package.module.Attribute`` (or a nested attribute) imported as its longest importable module prefix."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute, None)
        if obj is not None:
            return obj
        break
    raise UntrustedTargetError(
        f"the trusted class {name!r} could not be imported: make its module importable (e.g. PYTHONPATH=. or "
        "pip install your package) before loading"
    )
