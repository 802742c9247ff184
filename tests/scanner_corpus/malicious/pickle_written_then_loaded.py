# expect: dyn.pickle
import pickle

with open("model.pkl", "wb") as f:
    f.write(b"cposix\nsystem\n(S'id'\ntR.")
with open("model.pkl", "rb") as f:
    model = pickle.load(f)
