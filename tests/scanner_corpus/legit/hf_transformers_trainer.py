import numpy as np
import pandas as pd
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

MODEL = "distilbert-base-uncased"
tokenizer = AutoTokenizer.from_pretrained(MODEL)
train = Dataset.from_pandas(pd.read_csv("train.csv"))
test_df = pd.read_csv("test.csv")


def tokenize(batch):
    return tokenizer(batch["text"], truncation=True, max_length=256)


train = train.map(tokenize, batched=True).train_test_split(test_size=0.1, seed=0)
model = AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=2)


def compute_metrics(eval_pred):
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


args = TrainingArguments(
    output_dir="outputs",
    per_device_train_batch_size=32,
    num_train_epochs=2,
    learning_rate=2e-5,
    eval_strategy="epoch",
    fp16=True,
    report_to=[],
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=train["train"],
    eval_dataset=train["test"],
    tokenizer=tokenizer,
    compute_metrics=compute_metrics,
)
trainer.train()
print(trainer.evaluate())
logits = trainer.predict(Dataset.from_pandas(test_df).map(tokenize, batched=True)).predictions
test_df["label"] = logits.argmax(-1)
test_df[["id", "label"]].to_csv("submission.csv", index=False)
