"""schemathesis on the admin operations (jobs, tiers, moves) of a live server: no 500, answers match the contract."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import start_authorized_server


def test_admin_operations_keep_the_contract(tmp_path: Path) -> None:
    live, auth = start_authorized_server(tmp_path / "data")
    try:
        schema = schemathesis.openapi.from_url(f"{live.root}/openapi.json")
        operations = [r.ok() for r in schema.get_all_operations()]
        admin = [op for op in operations if op.path.startswith(("/admin/jobs", "/admin/tiers", "/admin/studies"))]
        assert len(admin) == 5
        for operation in admin:

            @given(case=operation.as_strategy())
            @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def keeps_contract(case: schemathesis.Case) -> None:
                # As in the core contract test: a POST's schema cannot say which tiers exist or what a valid
                # UID is, so a schema-valid request may rightly be a 400; every other check applies.
                excluded = [positive_data_acceptance] if case.method == "POST" else []
                case.call_and_validate(base_url=live.root, headers=auth, excluded_checks=excluded)

            keeps_contract()
    finally:
        live.stop()
