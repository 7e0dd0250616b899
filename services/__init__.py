"""The model serving stack: an inference service and a gateway, sharing :mod:`services.common`."""

__version__ = "0.1.0"
