"""Storage: tiers over fsspec, the archive container."""
