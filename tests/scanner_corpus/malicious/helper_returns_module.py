# expect: indirect.computed_attr
def load():
    import os

    return os


getattr(load(), "sy" + "stem")("id")
