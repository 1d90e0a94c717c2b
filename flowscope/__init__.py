"""flowscope's composition root: the ``flowscope`` command line and ``flowscope up``."""

__version__ = "0.1.0"
