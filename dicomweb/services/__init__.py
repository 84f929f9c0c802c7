"""The services every transport shares: ingest, retrieve, query."""
