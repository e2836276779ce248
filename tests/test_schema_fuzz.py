"""A bounded schemathesis run over every route in /openapi.json: whatever the input, no 5xx.

Schemathesis's pytest plugin does not run under pytest 9, so the operations are driven with
hypothesis directly.
"""

from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.openapi import from_asgi

from openft.models.store import ensure_bundled_model
from openft.server.app import create_app
from openft.settings import Settings
from openft.store.db import Database

EXAMPLES_PER_OPERATION = 25


def test_no_server_errors(data_dir):
    openft_settings = Settings(data_dir=data_dir)
    ensure_bundled_model(openft_settings, Database(openft_settings))
    schema = from_asgi("/openapi.json", create_app(openft_settings, run_worker=False))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
        def no_server_error(case):
            case.call_and_validate(checks=[not_a_server_error])

        no_server_error()
