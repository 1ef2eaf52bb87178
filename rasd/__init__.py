"""rasd: per-node GPU reliability and power daemon."""

__version__ = "0.1.0"
