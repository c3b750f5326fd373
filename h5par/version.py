"""h5par's version (standard library only, so that every layer can name it)."""

__version__ = "0.1.0"
