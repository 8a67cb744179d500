"""The one exception the vfimamba package raises for a model it cannot load as asked."""


class VFIMambaError(Exception):
    """VFIMamba cannot be used as asked (missing or bad checkpoint, no CUDA, bad option); one line."""
