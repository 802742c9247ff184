# expect: indirect.introspection
import json

json.dumps.__globals__["__builtins__"]["eval"]("1")
