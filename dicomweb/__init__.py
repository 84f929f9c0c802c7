"""A standards-first DICOMweb archive."""

__version__ = "0.1.0"
