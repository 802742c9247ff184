# expect: indirect.builtins
import sys

sys._getframe().f_builtins["exec"]("print(1)")
