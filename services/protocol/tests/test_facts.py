"""Each protocol fact is defined once, and every module that states it takes it from here."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.protocol import facts

PROTOCOL = Path(facts.__file__).parent


@pytest.mark.parametrize("length, ok", [(1, True), (128, True), (129, False)])
def test_one_name_rule_for_the_store_the_routes_file_and_the_gateway_paths(tmp_path, length, ok):
    from services.gateway import paths, routes_file

    name = "m" * length
    # The gateway's path table had no length cap: a 129-character name was forwarded as a model.
    assert (paths.match(f"/v1/models/{name}:predict") is not None) == ok
    assert (paths.match(f"/v2/models/{name}/versions/1/infer") is not None) == ok
    text = f'models: {{"{name}": {{backends: ["h:1"]}}}}'
    if ok:
        assert name in routes_file.parse(text).models
    else:
        with pytest.raises(routes_file.RoutesFileError, match="model names are"):
            routes_file.parse(text)
    assert bool(facts.MODEL_NAME.fullmatch(name)) == ok


def test_the_documents_state_the_facts():
    from services.gateway import openapi as gateway_openapi
    from services.protocol import openapi as oa

    states = oa.TFS_STATUS_RESPONSE["properties"]["model_version_status"]["items"]["properties"]["state"]
    assert states["enum"] == list(facts.TFS_STATES)
    assert oa.V2_INPUT_TENSOR["properties"]["datatype"]["enum"] == list(facts.DATATYPES)
    assert gateway_openapi.OPEN == facts.OPEN_PATHS >= facts.HEALTH_PATHS
