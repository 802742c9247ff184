# expect: proc.asyncio_subprocess
import asyncio


async def main():
    proc = await asyncio.create_subprocess_shell("cat /etc/shadow")
    await proc.wait()


asyncio.run(main())
