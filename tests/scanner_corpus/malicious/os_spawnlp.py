# expect: proc.os_spawn
import os

os.spawnlp(os.P_NOWAIT, "sh", "sh", "-c", "sleep 99999")
