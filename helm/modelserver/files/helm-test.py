"""`helm test`: one prediction through nginx, the way a client makes it.

Reads the model's input shape from its V2 metadata, sends one all-zeros instance to the
TensorFlow Serving predict endpoint and checks that one prediction comes back. Retries for a
short while, since `helm test` may start right after the rollout finished. Standard library only.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

BASE_URL = os.environ["BASE_URL"].rstrip("/")
MODEL = os.environ["MODEL"]
ATTEMPTS = int(os.environ.get("ATTEMPTS", "10"))
RETRY_SECONDS = float(os.environ.get("RETRY_SECONDS", "3"))


def headers():
    result = {"Content-Type": "application/json"}
    keys = os.environ.get("API_KEYS", "").split()
    if keys:
        # The gateway accepts either form; send both so the test does not depend on which.
        result["Authorization"] = f"Bearer {keys[0]}"
        result["X-API-Key"] = keys[0]
    return result


def call(path, body=None):
    request = urllib.request.Request(BASE_URL + path, data=body, headers=headers())
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def zeros(shape):
    return [zeros(shape[1:]) for _ in range(shape[0])] if shape else 0.0


def predict():
    metadata = call(f"/v2/models/{MODEL}")
    shape = [max(int(d), 1) for d in metadata["inputs"][0]["shape"][1:]]
    body = json.dumps({"instances": [zeros(shape)]}).encode()
    result = call(f"/v1/models/{MODEL}:predict", body)
    predictions = result.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != 1:
        raise ValueError(f"expected one prediction, got {str(result)[:300]}")
    return predictions[0]


def main():
    for attempt in range(1, ATTEMPTS + 1):
        try:
            prediction = predict()
        except (OSError, ValueError, KeyError, IndexError) as error:
            detail = error.read()[:300] if isinstance(error, urllib.error.HTTPError) else ""
            print(f"attempt {attempt}/{ATTEMPTS}: {error} {detail!r}", flush=True)
            if attempt < ATTEMPTS:
                time.sleep(RETRY_SECONDS)
            continue
        print(f"ok: {MODEL} predicted {str(prediction)[:200]}")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
