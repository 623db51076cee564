"""Build configuration for the one compiled part of ringlog: shm._codec.

Everything else (metadata, packages, dependencies) lives in pyproject.toml.
The extension is optional: where no C compiler is present the install still
succeeds and shm.records falls back to its pure-Python codec.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("shm._codec", ["shm/_codec.c"], optional=True, extra_compile_args=["-O2"]),
    ],
)
