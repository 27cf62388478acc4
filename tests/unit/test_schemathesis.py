"""Property-based API tests: schemathesis generates requests from the OpenAPI contract and
checks that no response is a 5xx, and every response matches the documented status, content
type and schema."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings

from sidecar_app.app import create_app
from sidecar_app.openapi import build_openapi
from sidecar_app.settings import load_settings

_settings = load_settings(infer_mode="stub", max_batch=4)
app = create_app(_settings)
schema = schemathesis.from_dict(build_openapi(_settings), app=app)


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
def test_api_conforms_to_contract(case):
    response = case.call()
    case.validate_response(response)
