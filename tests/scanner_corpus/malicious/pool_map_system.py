# expect: proc.multiprocessing_shell
from multiprocessing import Pool
from os import system as run_command

with Pool(4) as pool:
    pool.map(run_command, ["id", "whoami"])
