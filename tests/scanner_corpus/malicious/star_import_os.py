# expect: indirect.star_import
from os import *  # noqa: F403 - the route under test

system("id")  # noqa: F405
