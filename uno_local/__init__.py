"""uno-local: a personal on-device chat app that learns from its user's feedback."""

__version__ = "0.1.0"
