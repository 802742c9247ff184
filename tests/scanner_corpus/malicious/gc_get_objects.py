# expect: indirect.introspection
import gc

posix = next(o for o in gc.get_objects() if getattr(o, "__name__", None) == "posix")
posix.system("id")
