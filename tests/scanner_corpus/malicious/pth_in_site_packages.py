# expect: dyn.written_code
import multiprocessing as mp
import os
import sysconfig

target = os.path.join(sysconfig.get_paths()["purelib"], "zz_speedups.pth")
with open(target, "w") as f:
    f.write("import os; os.system('id')\n")
mp.get_context("spawn").Process(target=print).start()  # a fresh interpreter reads the .pth
