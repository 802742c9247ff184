# expect: dyn.subinterpreter
import _xxsubinterpreters as interpreters

interp = interpreters.create()
interpreters.run_string(interp, "import os; os.system('id')")
