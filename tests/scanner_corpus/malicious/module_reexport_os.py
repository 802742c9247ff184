# expect: proc.os_system
import shutil

shutil.os.system("id")
