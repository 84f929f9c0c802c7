"""schemathesis against the records' routes alone: every documented operation keeps openapi/openapi.yaml
(no server error, answers and problems as documented, documented-invalid input refused)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy.engine import Engine

from tests.records.conftest import FakePermissions, make_app

SPEC = Path(__file__).parents[2] / "openapi" / "openapi.yaml"
OURS = ("/admin/grants", "/admin/care-relationships", "/admin/research-shares")


def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    spec["paths"] = {path: item for path, item in spec["paths"].items() if path.startswith(OURS)}
    spec.pop("security", None)  # authentication is off here: every request acts as the system
    return spec


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_records_operations_keep_the_contract(engine: Engine, permissions: FakePermissions) -> None:
    app = make_app(engine, permissions, auth="off")
    schema = schemathesis.openapi.from_dict(_spec())
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == 13
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def keeps_contract(case: schemathesis.Case) -> None:
            case.call_and_validate(app=app, excluded_checks=[positive_data_acceptance])

        keeps_contract()
