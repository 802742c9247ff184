# expect: indirect.sys_modules
import sys

sys.modules["os"].system("id")
