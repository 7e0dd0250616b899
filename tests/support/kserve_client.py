"""KServe's own SDK against a server, V1 and V2: ``python kserve_client.py URL MODEL``.

Runs in the interpreter of ``.venv/kserve`` (``make setup`` makes it: the kserve package pins
python-dateutil<3, which the project's kubernetes client cannot live with), so it imports
nothing of the project. Prints one JSON object of what each call returned; a failed call
prints its error in its place, for the test to judge.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


async def main(url: str, model: str) -> dict[str, Any]:
    import numpy as np
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    pixels = np.linspace(0, 1, 2 * 64, dtype=np.float32).reshape(2, 8, 8, 1)
    found: dict[str, Any] = {}

    async def call(key: str, coroutine: Any) -> None:
        try:
            found[key] = await coroutine
        except Exception as error:  # noqa: BLE001  (reported to the test, which judges)
            found[key] = {"raised": f"{type(error).__name__}: {error}"}

    v1 = InferenceRESTClient(RESTConfig(protocol="v1", timeout=30))
    await call("v1_live", v1.is_server_live(url))
    await call("v1_model_ready", v1.is_model_ready(url, model))
    await call("v1_unknown_ready", v1.is_model_ready(url, "no-such-model"))
    await call("v1_predict", v1.infer(url, {"instances": pixels.tolist()}, model_name=model))
    await v1.close()

    v2 = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    await call("v2_live", v2.is_server_live(url))
    await call("v2_ready", v2.is_server_ready(url))
    await call("v2_model_ready", v2.is_model_ready(url, model))
    tensor = InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=False)
    try:
        response = await v2.infer(url, InferRequest(model, [tensor], request_id="kserve-v2"), model_name=model)
        found["v2_infer"] = {"id": response.id, "outputs": [
            {"name": o.name, "data": o.as_numpy().tolist()} for o in response.outputs]}
    except Exception as error:  # noqa: BLE001
        found["v2_infer"] = {"raised": f"{type(error).__name__}: {error}"}
    await v2.close()
    found["pixels"] = pixels.tolist()
    return found


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2])), default=str))
