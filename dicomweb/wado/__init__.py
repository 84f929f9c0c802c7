"""WADO-RS and WADO-URI (PS3.18 10.4, 9): instances, metadata, bulk data, frames."""
