"""The official Huawei SDK pointed at a jobtail server."""

from __future__ import annotations

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkmodelarts.v1 import ModelArtsClient

PROJECT = "0123456789abcdef0123456789abcdef"


def sdk_client(url: str, project_id: str = PROJECT, ak: str = "test-ak", sk: str = "test-sk") -> ModelArtsClient:
    """A ModelArtsClient on `url` signing with `ak`/`sk` (`project_id` given, so no IAM lookup)."""
    credentials = BasicCredentials(ak, sk, project_id)
    return ModelArtsClient.new_builder().with_credentials(credentials).with_endpoints([url]).build()
