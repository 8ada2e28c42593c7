"""A clock the tests move by hand, for code that takes ticks_ms and an async sleep_ms
(evse.modbus.Master): each sleep advances it and yields to the event loop once."""
import asyncio


class Clock:
    def __init__(self):
        self.ms = 0

    def ticks_ms(self):
        return self.ms

    async def sleep_ms(self, ms):
        self.ms += ms
        await asyncio.sleep(0)
