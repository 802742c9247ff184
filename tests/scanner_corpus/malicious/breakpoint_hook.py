# expect: dyn.exec
import os

os.environ["PYTHONBREAKPOINT"] = "os.system"
breakpoint("id")
