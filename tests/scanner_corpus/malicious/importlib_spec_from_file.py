# expect: dyn.importlib
from importlib import util

spec = util.spec_from_file_location("evil", "/tmp/evil.py")
