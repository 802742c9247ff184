# expect: proc.os_fork
import os

while True:
    os.fork()
