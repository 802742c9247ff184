# expect: indirect.computed_attr
import operator
import os

operator.methodcaller("system", "id")(os)
