"""What the API tests share: a client authenticated by a key, and a fresh shop key."""

import pytest
from rest_framework.test import APIClient

from api.services import api_key_create


def client_for(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.fixture
def api():
    _, key = api_key_create(name="Web shop")
    return client_for(key)
