"""Build configuration for the compiled parts of ringlog: shm._codec (the record
codec's loops) and appliance.client._accumulator (the producer's send()).

Everything else (metadata, packages, dependencies) lives in pyproject.toml.
Both extensions are optional: where no C compiler is present the install
still succeeds, shm.records falls back to its pure-Python codec and the
producer to its pure-Python send().
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("shm._codec", ["shm/_codec.c"], optional=True, extra_compile_args=["-O2"]),
        Extension("appliance.client._accumulator", ["appliance/client/_accumulator.c"],
                  optional=True, extra_compile_args=["-O2"]),
    ],
)
