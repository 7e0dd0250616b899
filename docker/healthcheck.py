"""The image's HEALTHCHECK: GET /healthz of whichever service this container runs (no curl here).

The service is read from the main process's command line; its port from the same ``*_BIND``
variable the service listens on. Exit status 0 healthy, 1 not.
"""

import os
import sys
import urllib.request


def url() -> str:
    with open("/proc/1/cmdline", "rb") as file:
        command = file.read().replace(b"\0", b" ")
    variable = "GATEWAY_BIND" if b"services/gateway/" in command else "INFERENCE_BIND"
    host, _, port = os.environ.get(variable, "").rpartition(":")
    if host.strip("[]") in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}/healthz"


def main() -> int:
    try:
        with urllib.request.urlopen(url(), timeout=4) as response:
            return 0 if response.status == 200 else 1
    except Exception as error:  # noqa: BLE001  (any failure means unhealthy)
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
