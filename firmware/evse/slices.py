# Long work written as a generator that yields between its steps (a list to check and store, a
# manifest, a file in chunks): run() takes it to its end at once (boot, tests, the console),
# run_async() lets the event loop run at each of its yields. Both give what it returns.


def run(work):
    while True:
        try:
            next(work)
        except StopIteration as e:
            return e.value


async def run_async(work, took=None):
    """took(ms): told how long each step held the loop (the task's own timing)."""
    import asyncio   # here: store uses run() at boot, and asyncio need not come with it
    import time
    try:
        while True:
            start = time.ticks_ms() if took is not None else 0
            try:
                next(work)
            except StopIteration as e:
                return e.value
            finally:
                if took is not None:
                    took(time.ticks_diff(time.ticks_ms(), start))
            await asyncio.sleep(0)
    except BaseException:
        # Cancelled (a link that dropped) or failed: the work's own cleanup runs now. MicroPython
        # never closes a generator nobody holds, so its finally clauses would never run.
        work.close()
        raise
