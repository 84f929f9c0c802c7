"""The one error the records raise: a problem with its HTTP status, which the CLI prints as well."""

from __future__ import annotations

from ...http.problems import HTTPProblem


class RecordError(HTTPProblem):
    """400 bad input (naming the field), 403 not permitted, 404 unknown or hidden, 409 wrong state."""
