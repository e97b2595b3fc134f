"""Breakfast: two things cooking at once with asyncio.gather.

Plain asyncio; run it with `python examples/breakfast.py` or on treadle with
`treadle run examples/breakfast.py`.  Either way it takes about 5 seconds,
not 8, because the toast cooks while the tea brews.
"""

import asyncio
import time


async def make_tea() -> str:
    print("tea: kettle on")
    await asyncio.sleep(5)
    print("tea: ready")
    return "tea"


async def make_toast() -> str:
    print("toast: bread in")
    await asyncio.sleep(3)
    print("toast: ready")
    return "toast"


async def main() -> None:
    start = time.monotonic()
    tea, toast = await asyncio.gather(make_tea(), make_toast())
    elapsed = time.monotonic() - start
    print(f"breakfast: {tea} and {toast} in {elapsed:.0f} seconds")


if __name__ == "__main__":
    asyncio.run(main())
