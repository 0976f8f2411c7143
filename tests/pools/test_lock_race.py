"""The source lock under concurrency, with real connections (one thread, one connection):
a pool edit checks the lock under the pool row's lock, which a bulk generation start
takes too, so a source change and the first generation batch are serialised."""

import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.db import connections, transaction

from coupons.generation import generation_start
from coupons.propagation import pool_update
from pools.models import CouponPool, PoolSource
from tests.factories import BulkPoolFactory

pytestmark = pytest.mark.django_db(transaction=True)


def in_thread(work):
    """Run ``work()`` in a thread of its own (its own connection); returns the thread and
    a list that receives its result or exception."""
    outcome = []

    def run():
        try:
            outcome.append(work())
        except Exception as exc:  # noqa: BLE001 - the test inspects the outcome
            outcome.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_source_change_waits_for_a_generation_start_and_is_then_refused():
    # Given an empty bulk pool, and an edit form that saw its source still open
    pool = BulkPoolFactory(pattern="RACE-$$$$$$$$")
    edited = CouponPool.objects.get(pk=pool.pk)
    assert not edited.lock_state().source_locked
    # When the first generation batch starts (its transaction still open) while the edit
    # switches the pool to Uploaded
    with transaction.atomic():
        generation_start(pool=pool, count=10, enqueue=False)
        thread, outcome = in_thread(lambda: pool_update(
            pool=edited, actor=None, source=PoolSource.UPLOADED, pattern=None))
        time.sleep(0.5)
        # Then the edit waits for the pool row
        assert thread.is_alive() and outcome == []
    thread.join(timeout=30)
    # And, the start committed, it is refused with the reason; the pool stays a started bulk pool
    assert len(outcome) == 1 and isinstance(outcome[0], ValidationError), outcome
    assert outcome[0].message_dict["source"] == [
        "Bulk generation has started for this pool; its source can no longer change. It is Bulk generation."]
    pool = CouponPool.objects.get(pk=pool.pk)
    assert pool.source == PoolSource.BULK and pool.generation_started_at is not None
