"""Predict one digit over gRPC, with TF Serving's client and with Triton's: `make run` prints this.

    .venv/bin/python examples/grpc_client.py 127.0.0.1:8500 [API_KEY]

Both clients are the stock ones (tensorflow-serving-api, tritonclient[grpc]); nothing here is
specific to this server but the model's name and input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as triton
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

HERE = Path(__file__).resolve().parent


def main(address: str, key: str = "") -> None:
    image = np.asarray(json.loads((HERE / "digit-0.json").read_text())["instances"], dtype=np.float32)
    metadata = [("authorization", f"Bearer {key}")] if key else []

    # TF Serving's PredictionService, as its clients call it.
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(address))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    tensor = request.inputs["pixels"]
    tensor.dtype = 1  # DT_FLOAT
    for size in image.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.float_val.extend(image.ravel().tolist())
    reply = stub.Predict(request, timeout=10, metadata=metadata)
    (output,) = reply.outputs.values()  # its floats in tensor_content (or float_val)
    scores = np.frombuffer(output.tensor_content, "<f4") if output.tensor_content else np.asarray(output.float_val)
    print("TF Serving Predict:", np.argmax(scores), "version", reply.model_spec.version.value)

    # The Open Inference Protocol's GRPCInferenceService, with Triton's client.
    client = triton.InferenceServerClient(address)
    pixels = triton.InferInput("pixels", list(image.shape), "FP32")
    pixels.set_data_from_numpy(image)
    result = client.infer("digits", [pixels], headers=dict(metadata), client_timeout=10)
    (name,) = [o.name for o in result.get_response().outputs]
    print("V2 ModelInfer:", int(np.argmax(result.as_numpy(name))), "version", result.get_response().model_version)


if __name__ == "__main__":
    main(*sys.argv[1:3])
