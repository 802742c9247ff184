# expect: proc.subprocess
import subprocess as sp

sp.Popen("id", shell=True)
