import pytest

from coupons.services import Actor
from tests.factories import UserFactory


@pytest.fixture
def actor(db):
    return Actor.of_user(UserFactory(username="operator"))
