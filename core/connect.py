"""Connect the real, unmodified earthengine-api and pydrive2 to an emulator URL.

Both clients talk HTTP to the emulator exactly as they would to Google: only the base URL and a
credential that never refreshes differ: Earth Engine gets the URL from ee.Initialize(url=...),
Drive from the rootUrl of its bundled discovery document.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

EMULATOR_TOKEN = "eebatch-emulator-token"


@contextlib.contextmanager
def _catalog_fetch_kept_local(url: str) -> Iterator[None]:
    """ee.Initialize fetches a deprecation catalog from storage.googleapis.com whatever the URL
    is. Routing https through the emulator (which answers CONNECT with 403) keeps it offline."""
    import urllib.request

    saved = {k: os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")}
    os.environ["HTTPS_PROXY"] = os.environ["https_proxy"] = url
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    # urlopen() caches one opener whose ProxyHandler read the environment when it was built: if
    # anything called urlopen earlier, the variables above would be ignored and the fetch would
    # go out directly. A fresh opener reads them now; the old one is put back afterwards.
    saved_opener = getattr(urllib.request, "_opener", None)
    urllib.request.install_opener(urllib.request.build_opener())
    try:
        yield
    finally:
        urllib.request.install_opener(saved_opener)  # type: ignore[arg-type]
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def init_ee(url: str, project: str = "eebatch-demo") -> None:
    """ee.Initialize against an emulator: a token credential that never refreshes, a project."""
    import ee
    from google.oauth2.credentials import Credentials

    url = url.rstrip("/")
    ee.Reset()  # a second Initialize would otherwise keep the first one's credentials
    with _catalog_fetch_kept_local(url):
        ee.Initialize(credentials=Credentials(token=EMULATOR_TOKEN), url=url, project=project)


def make_drive(url: str, http_timeout: float = 60):
    """A pydrive2 GoogleDrive on the bundled Drive v2 discovery document re-rooted at `url`.

    Re-rooting `rootUrl` (not client_options) keeps the upload URL on the emulator too.
    """
    from googleapiclient.discovery import build_from_document
    from googleapiclient.discovery_cache import get_static_doc
    from oauth2client.client import AccessTokenCredentials
    from pydrive2.auth import GoogleAuth
    from pydrive2.drive import GoogleDrive

    root = url.rstrip("/") + "/"
    doc = json.loads(get_static_doc("drive", "v2"))
    doc["rootUrl"] = root
    doc["mtlsRootUrl"] = root
    gauth = GoogleAuth(settings_file=None, http_timeout=http_timeout)
    gauth.credentials = AccessTokenCredentials(EMULATOR_TOKEN, "eebatch")
    gauth.http = gauth.credentials.authorize(gauth._build_http())
    gauth.service = build_from_document(doc, http=gauth.http)
    return GoogleDrive(gauth)
