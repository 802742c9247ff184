# expect: indirect.computed_attr
import asyncio
import sys


async def main():
    loop = asyncio.new_event_loop()
    await getattr(loop, sys.argv[1])(asyncio.SubprocessProtocol, "id")


asyncio.run(main())
