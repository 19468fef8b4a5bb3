"""Waiting for something another process does, with a deadline that fails the test loudly (never a
silent time-out that lets a later assertion fail with a misleading message)."""
import time


def wait_for(predicate, timeout=120.0, what="the condition", every=0.05):
    """The first truthy value of `predicate()` within `timeout` seconds, else AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
