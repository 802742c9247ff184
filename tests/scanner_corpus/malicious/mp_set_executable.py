# expect: proc.os_exec
import multiprocessing as mp

ctx = mp.get_context("spawn")
ctx.set_executable("/bin/sh")
ctx.Process(target=print).start()
