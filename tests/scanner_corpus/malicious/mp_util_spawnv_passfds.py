# expect: proc.os_spawn
from multiprocessing import util

util.spawnv_passfds(b"/bin/sh", [b"sh", b"-c", b"id"], [])
