"""The one exception the rife package raises for a model it cannot load as asked."""


class RifeError(Exception):
    """RIFE cannot be used as asked (weights missing or corrupted, no CUDA, bad option); one line."""
