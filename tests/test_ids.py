"""Call ids: 32 hex digits that sort by creation time and never repeat, in a forked child too."""

from __future__ import annotations

import os
import sys
import time

import pytest

from holysheep_lab.core.ids import new_id


def test_ids_are_32_hex_digits_sorted_by_millisecond() -> None:
    first = new_id()
    time.sleep(0.002)
    later = new_id()
    assert len(first) == len(later) == 32 and int(first, 16) and int(later, 16)
    assert first[:12] < later[:12]
    assert len({new_id() for _ in range(100_000)}) == 100_000


@pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_id()  # the parent's generator has state the child would inherit
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next 100 ids and leave
        os.write(write, "".join(new_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    data = os.read(read, 1 << 16).decode()
    os.close(read)
    child = {data[i + 12:i + 32] for i in range(0, len(data), 32)}
    parent = {new_id()[12:] for _ in range(100)}
    assert len(child) == 100 and not child & parent
