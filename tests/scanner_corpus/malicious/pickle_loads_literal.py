# expect: dyn.pickle
import base64
import pickle

# protocol-0 pickle of os.system("id"), hidden behind base64
payload = base64.b64decode("Y3Bvc2l4CnN5c3RlbQooUydpZCcKdFIu")
pickle.loads(payload)
