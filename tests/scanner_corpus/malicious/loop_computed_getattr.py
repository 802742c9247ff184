# expect: proc.asyncio_subprocess
import asyncio


async def main():
    loop = asyncio.get_running_loop()
    run = getattr(loop, "subprocess_" + "shell")
    await run(asyncio.SubprocessProtocol, "id")


asyncio.run(main())
