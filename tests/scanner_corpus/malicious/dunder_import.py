# expect: dyn.dunder_import
__import__("os").system("id")
