# expect: proc.asyncio_subprocess
import asyncio


async def main():
    loop = asyncio.get_running_loop()
    await loop.subprocess_shell(asyncio.SubprocessProtocol, "id")


asyncio.run(main())
