"""fastsock's version: its one source (pyproject.toml reads it), in a module of its own so that
any module can say it without importing the package (and all it imports) first."""
__version__ = "0.1.0"
