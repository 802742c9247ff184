import numpy as np
import pandas as pd
from tensorflow import keras

train = pd.read_csv("train.csv")
X, y = train.drop(columns=["label"]).values / 255.0, train["label"].values
model = keras.Sequential(
    [
        keras.layers.Input((X.shape[1],)),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(X, y, epochs=5, batch_size=128, validation_split=0.1, verbose=2)
print("best val acc", max(history.history["val_accuracy"]))
test = pd.read_csv("test.csv").values / 255.0
labels = np.argmax(model.predict(test), axis=1)
pd.DataFrame({"ImageId": np.arange(1, len(labels) + 1), "Label": labels}).to_csv("submission.csv", index=False)
