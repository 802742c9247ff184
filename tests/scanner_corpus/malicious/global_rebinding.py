# expect: indirect.computed_attr
def run(name):
    return getattr(handle, name)("id")


def setup():
    global handle
    import os

    handle = os


setup()
run(input())
