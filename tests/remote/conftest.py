"""The shared ``model`` and ``image`` fixtures (see :mod:`tests.tiny`)."""

from tests.tiny import image, model

__all__ = ["image", "model"]
