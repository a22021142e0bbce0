"""Crisis Exchange Gateway: signed sitrep exchange between national crisis centres."""

__version__ = "0.1.0"
