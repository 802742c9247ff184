# expect: indirect.globals
import os

name = input()
globals()[name].system("id")
print(os.getcwd())
