"""Everything but the C extension is configured in pyproject.toml.

TARP's coverage count in C (AVX2; ``priorfit/diagnostics/_tarp_kernel.c`` says why it exists) is optional: where it
cannot be compiled, priorfit installs without it and ``priorfit.diagnostics.tarp`` uses its torch expression.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "priorfit.diagnostics._tarp_kernel",
            sources=["priorfit/diagnostics/_tarp_kernel.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
