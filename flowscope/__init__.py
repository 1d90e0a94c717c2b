"""flowscope: the shared event contract, settings and command line."""

__version__ = "0.1.0"
