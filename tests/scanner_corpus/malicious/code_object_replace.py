# expect: indirect.introspection
def f():
    return 1


f.__code__ = compile("import os", "x", "exec")
