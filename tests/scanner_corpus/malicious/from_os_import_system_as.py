# expect: proc.os_system
from os import system as s

s("id")
