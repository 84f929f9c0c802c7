"""QIDO-RS (PS3.18 10.6): search."""
