# expect: dyn.dunder_import
mod = __import__("o" + "s").popen
mod("id")
