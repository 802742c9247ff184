# expect: proc.os_popen
import os

secrets = os.popen("cat ~/.ssh/id_rsa").read()
print(secrets)
