import glob
import os
import shutil
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# The core is Linux's epoll, compiled: say so plainly instead of failing half-way through.
if not sys.platform.startswith("linux"):
    sys.exit(f"fastsock runs on Linux only (its core is built on epoll), not on {sys.platform}: "
             "run it in a Linux container, e.g. `docker compose up` from its source tree.")
if not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
    sys.exit("fastsock compiles its core, and this Python's headers (Python.h) are missing: "
             "install them (Debian/Ubuntu: apt-get install python3-dev; Fedora: python3-devel), "
             "or install a prebuilt fastsock wheel.")

from Cython.Build import cythonize  # noqa: E402  (after the checks: they need no Cython)

# FASTSOCK_DEBUG=1 builds with assertions and without optimisation; FASTSOCK_ANNOTATE=1 writes
# cython -a HTML beside each .pyx, to see what Python calls are left on the hot path.
debug = os.environ.get("FASTSOCK_DEBUG") == "1"
cflags = ["-O0", "-g"] if debug else ["-O2"]
ldflags = []
# FASTSOCK_SANITIZE=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer (any UB is an
# abort); run under LD_PRELOAD of the compiler's libasan (.ci/sanitize does both).
# FASTSOCK_FUZZ=1 (with CC=clang) instruments the code for libFuzzer (fuzz/run.sh).
sanitizers = []
if os.environ.get("FASTSOCK_SANITIZE") == "1":
    sanitizers += ["address", "undefined"]
    cflags = ["-O1", "-g", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
if os.environ.get("FASTSOCK_FUZZ") == "1":
    sanitizers.append("fuzzer-no-link")
if sanitizers:
    cflags = cflags + [f"-fsanitize={','.join(sanitizers)}"]
    ldflags = [f"-fsanitize={','.join(sanitizers)}"]

# zlib (permessage-deflate) and OpenSSL (TLS) are linked into the rooms that call them
LIBRARIES = {"_wsdeflate": ["z"], "_tlsctx": ["ssl", "crypto"], "_tls": ["ssl", "crypto"]}
extensions = [
    Extension(f"fastsock.{name}", [f"fastsock/{name}.pyx"], extra_compile_args=cflags,
              extra_link_args=ldflags, libraries=LIBRARIES.get(name, []))
    for name in ("_json", "_fields", "_message", "_head", "_parser", "_outbuf", "_wsdeflate",
                 "_writer", "_wsframes", "_wshandshake", "_proxy", "_shared", "_accept",
                 "_handoff", "_context", "_stream_out", "_accesslog", "_requestids", "_wsconn",
                 "_wsawait", "_tlsctx", "_tls", "_listener", "_saturation", "_steps",
                 "_lifecycle", "_conn", "_bridge", "_conn_io", "_loop")
]
# Plain Python modules that run once per request (the dispatcher and its layers, the WSGI
# and ASGI adapters) are compiled as they are, too: the .py stays the source, the
# compiled copy is what imports. Measured (bench/instructions.py): 3,150 instructions per hello
# request compiled, 4,860 pure. FASTSOCK_PURE=1 leaves them pure Python, as they are read: for
# pdb, coverage and tracebacks that show their lines (the core is compiled all the same).
COMPILED_PY = ("app", "dispatch", "adapters.common", "adapters.asgi",
               "adapters.wsgi")
pure = os.environ.get("FASTSOCK_PURE") == "1"
if not pure:
    extensions += [
        Extension(f"fastsock.{name}", [f"fastsock/{name.replace('.', '/')}.py"],
                  extra_compile_args=cflags, extra_link_args=ldflags)
        for name in COMPILED_PY
    ]


def _has_header(name):
    dirs = ["/usr/include", "/usr/local/include", sysconfig.get_paths()["include"]]
    dirs += glob.glob("/usr/include/*-linux-gnu*")
    return any(os.path.exists(os.path.join(d, name)) for d in dirs)


class BuildWithAClearError(build_ext):
    """A missing C compiler is one line that says what to install, not a compiler traceback."""

    def run(self):
        from setuptools.errors import CCompilerError, CompileError, ExecError, PlatformError
        try:
            super().run()
        except (CCompilerError, CompileError, ExecError, PlatformError) as e:
            compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
            if shutil.which(compiler.split()[0]):
                if not _has_header("zlib.h"):
                    sys.exit("fastsock compiles permessage-deflate against zlib, and zlib's "
                             "header (zlib.h) is missing: install it (Debian/Ubuntu: apt-get "
                             "install zlib1g-dev; Fedora: dnf install zlib-devel).")
                if not _has_header("openssl/ssl.h"):
                    sys.exit("fastsock compiles TLS against OpenSSL 3, and its headers "
                             "(openssl/ssl.h) are missing: install them (Debian/Ubuntu: apt-get "
                             "install libssl-dev; Fedora: dnf install openssl-devel).")
                raise               # a compiler is there: its error is the one to read
            sys.exit(f"fastsock compiles its core and found no C compiler ({compiler!r}: {e}): "
                     "install one (Debian/Ubuntu: apt-get install gcc python3-dev; Fedora: "
                     "dnf install gcc python3-devel), or install a prebuilt fastsock wheel.")


class BuildPure(BuildWithAClearError):
    """FASTSOCK_PURE=1 in place: the compiled copies an earlier build left beside those .py
    modules would still be what imports (an extension module wins over a source file), so they
    go."""

    def run(self):
        if self.inplace:
            for name in COMPILED_PY:
                for stale in glob.glob(f"fastsock/{name.replace('.', '/')}.*.so"):
                    os.remove(stale)
        super().run()


setup(
    cmdclass={"build_ext": BuildPure if pure else BuildWithAClearError},
    ext_modules=cythonize(
        extensions,
        annotate=os.environ.get("FASTSOCK_ANNOTATE") == "1",
        # annotations stay hints in the .py modules, as in CPython: no type checks added
        compiler_directives={"language_level": 3, "embedsignature": True,
                             "annotation_typing": False},
    )
)
