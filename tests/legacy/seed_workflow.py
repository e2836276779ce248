"""The 2023 guide's workflow with the legacy openai==0.28 module API.

Run in a subprocess whose sys.path starts with a folder holding openai 0.28.1:
    python seed_workflow.py BASE_URL TRAINING_FILE
Prints one JSON object with what it saw; any failure raises (non-zero exit).
"""

import json
import sys
import time

import openai

assert openai.version.VERSION.startswith("0.28"), openai.version.VERSION

base_url, training_path = sys.argv[1], sys.argv[2]
openai.api_base = base_url
openai.api_key = "sk-legacy"

uploaded = openai.File.create(file=open(training_path, "rb"), purpose="fine-tune")
assert uploaded.id.startswith("file-") and uploaded.status == "processed"
assert openai.File.retrieve(uploaded.id).filename == uploaded.filename
assert uploaded.id in [f.id for f in openai.File.list().data]

job = openai.FineTuningJob.create(
    training_file=uploaded.id, model="gpt-3.5-turbo", suffix="legacy", hyperparameters={"n_epochs": 2, "batch_size": 10}
)
deadline = time.time() + 900
while job.status not in ("succeeded", "failed", "cancelled"):
    assert time.time() < deadline, "job did not finish"
    time.sleep(0.2)
    job = openai.FineTuningJob.retrieve(job.id)
assert job.status == "succeeded", job
assert job.id in [j.id for j in openai.FineTuningJob.list(limit=10).data]
events = openai.FineTuningJob.list_events(id=job.id, limit=5)
assert len(events.data) == 5 and events.has_more

messages = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of Italy?"},
]
completion = openai.ChatCompletion.create(model=job.fine_tuned_model, messages=messages, temperature=0, max_tokens=30)
streamed = "".join(
    chunk.choices[0].delta.get("content", "")
    for chunk in openai.ChatCompletion.create(
        model=job.fine_tuned_model, messages=messages, temperature=0, max_tokens=30, stream=True
    )
)
assert streamed == completion.choices[0].message.content

assert openai.Model.retrieve(job.fine_tuned_model).id == job.fine_tuned_model
assert job.fine_tuned_model in [m.id for m in openai.Model.list().data]

second = openai.FineTuningJob.create(training_file=uploaded.id, model="gpt-3.5-turbo")
assert openai.FineTuningJob.cancel(second.id).status == "cancelled"
assert openai.File.delete(uploaded.id).deleted
try:
    openai.FineTuningJob.retrieve("ftjob-missing")
    raise AssertionError("expected an error")
except openai.error.InvalidRequestError as error:
    assert error.http_status == 404

print(json.dumps({"fine_tuned_model": job.fine_tuned_model, "answer": completion.choices[0].message.content}))
