"""marginsync: a synchronised margin engine for on-chain derivatives."""

__version__ = "0.1.0"
