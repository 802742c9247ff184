# expect: dyn.written_code
import sys

with open("/tmp/cache/helpers.py", "w") as f:
    f.write("import os\nos.system('id')\n")
sys.path.insert(0, "/tmp/cache")
import helpers

helpers.run()
