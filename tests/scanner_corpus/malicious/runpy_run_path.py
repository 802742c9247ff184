# expect: dyn.runpy
import runpy

runpy.run_path("/tmp/downloaded.py")
