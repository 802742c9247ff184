# expect: proc.os_exec
import os

os.execv("/bin/sh", ["sh", "-c", "id"])
