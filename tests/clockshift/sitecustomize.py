"""Moves this interpreter's wall clock when the test suite runs under ``pytest --clock``.

The suite's conftest puts this folder on ``PYTHONPATH`` and sets ``LISTENER_TEST_CLOCK_OFFSET_S``,
so the processes a test starts (the daemon, ``listener poll``) live in the same shifted time
as the test itself. Monotonic clocks are left alone, so timeouts and sleeps behave normally.
"""

import os

_offset = os.environ.get("LISTENER_TEST_CLOCK_OFFSET_S")
if _offset:
    import time

    import time_machine

    time_machine.travel(time.time() + float(_offset), tick=True).start()
