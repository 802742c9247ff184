# expect: dyn.code_module
import timeit

timeit.timeit("__import__('os').system('id')", number=1)
