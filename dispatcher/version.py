"""The package's version (base layer: what every layer may import)."""

__version__ = "0.1.0"
