# SPDX-License-Identifier: MIT
# Long C calls release the GIL: another Python thread keeps running during a large save/load.
import ctypes
import threading
import time

import pytest

import ckpt
from ckpt import _lib

SIZE = 256 << 20


class Ticker:
    """A Python thread that ticks about once a millisecond; it needs the GIL for every tick."""

    def __init__(self):
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            time.sleep(0.001)
            self.ticks += 1

    def __enter__(self):
        self._thread.start()
        while self.ticks < 3:
            time.sleep(0.001)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def big():
    return bytearray(b"\x5a" * SIZE)


def test_save_and_load_release_the_gil(ck, big):
    with Ticker() as t:
        before = t.ticks
        ck.save(1, {"big": big})
        during_save = t.ticks - before
        target = bytearray(SIZE)
        before = t.ticks
        ck.load(1, into={"big": target})
        during_load = t.ticks - before
    assert target == big
    # A save of 256 MiB (write + fsync) takes tens of milliseconds at the very least; a thread
    # blocked on the GIL would not tick at all (see the control below).
    assert during_save >= 10, during_save
    assert during_load >= 2, during_load


def test_control_pydll_holds_the_gil(ck, big):
    """The same C call through ctypes.PyDLL (which keeps the GIL): the ticker stops. Shows the
    test above measures what it claims."""
    fn = ctypes.PyDLL(ckpt.library_path()).ckpt_save
    fn.argtypes, fn.restype = _lib.lib().ckpt_save.argtypes, ctypes.c_int
    regs = (_lib.ckpt_region * 1)()
    buf = (ctypes.c_char * SIZE).from_buffer(big)
    regs[0].name, regs[0].data, regs[0].size = b"big", ctypes.addressof(buf), SIZE
    try:
        with Ticker() as t:
            before = t.ticks
            rc = fn(ck._ctx, 2, regs, 1)
            during = t.ticks - before
    finally:
        del regs, buf
    assert rc == 0
    assert during <= 3, during


def test_threads_share_a_checkpointer(dirs):
    """Calls from several threads on one Checkpointer are serialized; each gets its own
    result and error message."""
    # Retention off: the threads' steps interleave, and each reads its own back.
    ck = ckpt.Checkpointer(local_dir=dirs[0], shared_dir=dirs[1], keep_local=100, keep_shared=0)
    errors = []

    def worker(k):
        try:
            for i in range(5):
                step = 100 * k + i
                payload = bytes([k, i]) * 1000
                ck.save(step, {"p": payload})
                assert ck.load(step)["p"] == payload
                try:
                    ck.load(step, names=["missing-%d" % k])
                except ckpt.NotFound as e:
                    assert "missing-%d" % k in e.message, e.message
                else:
                    raise AssertionError("no NotFound")
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(1, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ck.close()
    assert not errors, errors
