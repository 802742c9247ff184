# expect: proc.os_system
import os

run = os.system
run("id")
