"""envtool: custom Python environments and stubs for Triton's Python backend, built and verified."""

__version__ = "0.1.0"
