"""schemathesis against the app's own OpenAPI schema: no generated request may get a 5xx,
and every answer must match the schema (status codes, content types, bodies).

Bounded and deterministic: a fixed number of examples per operation, derandomized,
no example database, so the run takes seconds and never flakes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from api_support import ADMIN, sample_items, settings_for
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ownrank import Engine
from ownrank.service.app import create_app

from conftest import WordHashEncoder

MAX_EXAMPLES = 15  # per operation; about 20 operations

_data_dir = Path(tempfile.mkdtemp(prefix="ownrank-schema-test-"))
_engine = Engine(_data_dir / "data", encoder=WordHashEncoder())
_engine.catalog.upsert([*sample_items(), {"id": "astronomy-029", "title": "Reading galaxy shapes"}])
_engine.interact("demo-reader", [{"kind": "like", "item_id": "jazz-0"}])
app = create_app(settings_for(_data_dir / "data"), engine=_engine)

config = SchemathesisConfig.from_dict(
    {
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


@pytest.fixture(scope="module", autouse=True)
def _close_engine() -> Iterator[None]:
    yield
    _engine.close()
    shutil.rmtree(_data_dir, ignore_errors=True)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_no_generated_request_gets_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=ADMIN, checks=CHECKS)
