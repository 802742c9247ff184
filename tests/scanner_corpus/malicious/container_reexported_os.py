# expect: proc.os_system
import glob

[glob][0].os.system("id")
