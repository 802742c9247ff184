# expect: proc.os_spawn
import os

os.posix_spawn("/bin/sh", ["sh", "-c", "id"], os.environ)
