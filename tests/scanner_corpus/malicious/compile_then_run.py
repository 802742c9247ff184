# expect: dyn.compile
import types

code = compile("import os; os.system('id')", "<x>", "exec")
types.FunctionType(code, {})()
