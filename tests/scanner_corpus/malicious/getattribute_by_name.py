# expect: proc.os_system
import os

os.__getattribute__("sys" + "tem")("id")
