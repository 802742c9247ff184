# expect: proc.os_system
import os

import numpy as np

x = np.zeros(3)
os.system("rm -rf /tmp/gpuledger")
print(x)
