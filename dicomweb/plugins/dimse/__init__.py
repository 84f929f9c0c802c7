"""The DIMSE gateway (issue 7): modalities echo, store, find, move, get, commit, read worklists and report
performed procedure steps over the archive's own ingest, query and retrieve services."""

from .server import DimseGateway

__all__ = ["DimseGateway"]
