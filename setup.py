import os

from Cython.Build import cythonize
from setuptools import Extension, setup

# FASTSOCK_DEBUG=1 builds with assertions and without optimisation; FASTSOCK_ANNOTATE=1 writes
# cython -a HTML beside each .pyx, to see what Python calls are left on the hot path.
debug = os.environ.get("FASTSOCK_DEBUG") == "1"
cflags = ["-O0", "-g"] if debug else ["-O2"]

extensions = [
    Extension(f"fastsock.{name}", [f"fastsock/{name}.pyx"], extra_compile_args=cflags)
    for name in ("_message", "_parser", "_writer", "_proxy", "_shared", "_conn", "_loop")
]

setup(
    ext_modules=cythonize(
        extensions,
        annotate=os.environ.get("FASTSOCK_ANNOTATE") == "1",
        compiler_directives={"language_level": 3, "embedsignature": True},
    )
)
