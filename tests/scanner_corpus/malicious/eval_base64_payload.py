# expect: dyn.eval
import base64

payload = "X19pbXBvcnRfXygnb3MnKS5zeXN0ZW0oJ2lkJyk="
eval(base64.b64decode(payload).decode())
