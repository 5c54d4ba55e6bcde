"""The ceiling of the enqueue bench: a bare Flask view under the same gunicorn as the API.

It reads the JSON body and answers 202 with a small JSON object, as an
enqueue does, and nothing else: no key, no limits, no Redis. The API's
enqueues per second divided by this view's, measured in the same run with
the same wrk script, is the share of this stack's ceiling the API reaches.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/health")
def health():  # what the bench waits on, as it does for the API
    return jsonify({"status": "ok"})


@app.post("/api/image-queue/<endpoint>")
def enqueue(endpoint: str):
    body = request.get_json()
    return jsonify({"job_id": "0" * 32, "record_id": body["record_id"], "state": "queued"}), 202
