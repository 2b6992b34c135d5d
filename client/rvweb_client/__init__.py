"""rvweb_client: the Renderbus / Fox Renderfarm transfer SDK's shape over rvweb's REST API.

A script written for the SDK runs with its imports and its connection line changed:

    from rvweb_client import RayvisionAPI, RayvisionUpload, RayvisionDownload, cutting_upload, append_to_upload
    api = RayvisionAPI(url="http://127.0.0.1:8000", token="...", access_id="xxxxx", platform="2")

Standard library only (urllib, json).
"""

from rvweb_client.api import RayvisionAPI
from rvweb_client.download import RayvisionDownload
from rvweb_client.exceptions import DownloadFailed, RayvisionError, TransferFailed, UploadFailed
from rvweb_client.upload import RayvisionUpload
from rvweb_client.utils import append_to_upload, convert_path, cutting_upload

__version__ = "0.1.0"
__all__ = [
    "DownloadFailed",
    "RayvisionAPI",
    "RayvisionDownload",
    "RayvisionError",
    "RayvisionUpload",
    "TransferFailed",
    "UploadFailed",
    "append_to_upload",
    "convert_path",
    "cutting_upload",
]
