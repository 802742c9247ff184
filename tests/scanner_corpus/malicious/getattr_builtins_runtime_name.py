# expect: indirect.computed_attr
import builtins
import sys

getattr(builtins, sys.argv[1])(sys.argv[2])
