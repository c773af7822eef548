"""warmstart: transfer learning for image recognition, proven against a scratch baseline."""

__version__ = "0.1.0"
