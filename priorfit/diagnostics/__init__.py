"""Posterior checks on plain tensors: TARP coverage, SBC ranks, C2ST, gaps to an analytic posterior.

Each takes samples / true values as tensors (no networks) and returns a dataclass with ``to_dict()`` and
``.plot()``. ``CalibrationCallback`` runs TARP and SBC during training; ``priorfit-eval`` writes a report.
"""

from priorfit.diagnostics.c2st import C2STResult, c2st
from priorfit.diagnostics.gaps import PosteriorGapResult, exact_gap
from priorfit.diagnostics.sbc import SBCResult, sbc
from priorfit.diagnostics.tarp import TarpResult, tarp

__all__ = ["tarp", "TarpResult", "sbc", "SBCResult", "c2st", "C2STResult", "exact_gap", "PosteriorGapResult"]
