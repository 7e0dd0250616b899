"""Inference settings that are more than one number: the version policy."""

from __future__ import annotations

import pytest

from services.common.settings import SettingsError
from services.inference.config import load_settings


@pytest.mark.parametrize("policy, kept", [("all", None), ("latest:1", 1), ("LATEST:3", 3)])
def test_version_policies(policy, kept):
    assert load_settings(version_policy=policy).kept_versions == kept


# "²".isdigit() is true and int() refuses it (a bare ValueError); int() reads "١" as 1.
@pytest.mark.parametrize("policy", ["latest:²", "latest:١", "latest:0", "latest:", "newest:2"])
def test_bad_version_policies_name_the_variable(policy):
    with pytest.raises(SettingsError, match="INFERENCE_VERSION_POLICY=.*expected latest:N"):
        load_settings(version_policy=policy)
