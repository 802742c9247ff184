# expect: dyn.exec
with open("helper.txt") as f:
    exec(f.read())
