"""Schemathesis against the served schema on a running server: no 5xx, no response that
breaks the schema. Bounded examples per operation, so CI stays quick."""

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from api.services import api_key_create
from coupons.models import CouponStatus
from tests.factories import CouponFactory, CustomerFactory, PoolFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api_key(transactional_db):
    # Something to find: a pool with coupons, a claimed one, a customer.
    pool = PoolFactory(external_id="FUZZ-POOL")
    anna = CustomerFactory(external_id="anna")
    for n in range(20):
        CouponFactory(pool=pool, code=f"FUZZ-{n}")
    CouponFactory(pool=pool, code="FUZZ-CLAIMED", status=CouponStatus.CLAIMED, customer=anna)
    return api_key_create(name="Fuzzer")[1]


# The schema as the server serves it (read through WSGI at collection time; the calls
# below go over HTTP to the running live server).
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_keeps_to_its_schema(case, api_key, live_server):
    case.call_and_validate(
        base_url=live_server.url,
        headers={"Authorization": f"Api-Key {api_key}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
