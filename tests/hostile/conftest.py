"""Where hostile inputs are sent: through nginx (what clients reach), and straight at the
gateway and at an inference replica (what a client inside the network could reach)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["nginx", "gateway", "inference"])
def target(request, stack) -> str:
    url, local = stack
    if request.param == "nginx":
        return url
    if local is None:
        pytest.skip("reaches inside the stack: local stack only")
    state = local.state
    return state["gateway"] if request.param == "gateway" else state["inference"][0]
