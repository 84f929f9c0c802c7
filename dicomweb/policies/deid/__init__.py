"""De-identification for the anonymized view: PS3.15 Annex E Basic Application Level Confidentiality Profile
(with the option Retain Longitudinal Temporal Information with Modified Dates), consistent UID pseudonyms that
resolve back, stable research patient IDs."""

from __future__ import annotations

from .deidentifier import Deidentifier

__all__ = ["Deidentifier"]
