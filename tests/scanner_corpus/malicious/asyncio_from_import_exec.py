# expect: proc.asyncio_subprocess
import asyncio
from asyncio import create_subprocess_exec as start


async def main():
    await (await start("id")).wait()


asyncio.run(main())
