# expect: proc.os_system
import os

os.__dict__["sys" + "tem"]("id")
