# expect: dyn.code_module
import cProfile

cProfile.run("import os; os.system('id')")
