import pytest

from tests.factories import UserFactory


@pytest.fixture
def manager(db):
    return UserFactory(username="manager")


@pytest.fixture
def superuser(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


@pytest.fixture
def admin_client_(client, superuser):
    client.force_login(superuser)
    return client
