"""dl: a functional JAX research framework for deep learning."""

__version__ = "0.1.0"
