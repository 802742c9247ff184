# expect: indirect.module_value
import os

tools = {"runner": os}
tools["runner"].system("id")
