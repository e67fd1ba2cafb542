"""The interpreter's switch interval, shortened while a block runs and restored after."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from trestle.support import switching


@pytest.fixture(autouse=True)
def default_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(before)


def test_the_interval_is_short_inside_and_restored_after() -> None:
    with switching.quick():
        assert sys.getswitchinterval() == pytest.approx(switching.QUICK)
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_an_interval_already_shorter_is_kept() -> None:
    sys.setswitchinterval(0.0001)
    with switching.quick():
        assert sys.getswitchinterval() == pytest.approx(0.0001)
    assert sys.getswitchinterval() == pytest.approx(0.0001)


def test_overlapping_holders_restore_it_only_when_the_last_ends() -> None:
    # two engines' windows, one inside the other's and one outlasting it: ended out of
    # order, the interval before either is what is left
    first, second = switching.quick(), switching.quick()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert sys.getswitchinterval() == pytest.approx(switching.QUICK)
    second.__exit__(None, None, None)
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_it_is_restored_when_the_block_raises_on_another_thread() -> None:
    def raising() -> None:
        with pytest.raises(RuntimeError), switching.quick():
            raise RuntimeError("a monitor failed")

    worker = threading.Thread(target=raising)
    worker.start()
    worker.join()
    assert sys.getswitchinterval() == pytest.approx(0.005)
