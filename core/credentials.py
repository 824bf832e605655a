"""Credentials for the real Earth Engine and Drive, kept under the user config dir with mode
0600 and never printed.

Two ways in, both of which work on a headless server over SSH:
* a service-account key (`eebatch auth service-account KEY.json`): nothing interactive, but
  the exports then land in the service account's own Drive;
* your own Google account through a loopback OAuth flow (`eebatch auth login`): the URL opens in
  the browser of your laptop, and an SSH tunnel (`ssh -L 8085:localhost:8085 server`) carries
  Google's redirect back to the listener on the server. One authorization covers EE and Drive.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import paths

SCOPES = [
    "https://www.googleapis.com/auth/earthengine",
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/drive",
]
TOKEN_URI = "https://oauth2.googleapis.com/token"


class CredentialsError(Exception):
    """Missing or unusable credentials; the message says what to run. Never holds a secret."""


def service_account_path() -> Path:
    return paths.config_dir() / "service-account.json"


def token_path() -> Path:
    return paths.config_dir() / "token.json"


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner only: created 0600, never world-readable even for an
    instant."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def mode_problem(path: Path) -> str | None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
    return None


def save_service_account(key_file: Path) -> str:
    """Check and store a service-account key; returns its client email."""
    try:
        data = json.loads(key_file.read_text())
    except OSError as exc:
        raise CredentialsError(f"{key_file}: cannot read: {exc.strerror}") from None
    except ValueError:
        raise CredentialsError(f"{key_file}: not a JSON key file") from None
    missing = [k for k in ("client_email", "private_key", "token_uri") if k not in data]
    if data.get("type") != "service_account" or missing:
        raise CredentialsError(f"{key_file}: not a service-account key (expected type "
                               "\"service_account\" with client_email and private_key)")
    write_private(service_account_path(), data)
    return str(data["client_email"])


def login(client_secrets: Path, port: int = 8085) -> str:
    """Run Google's loopback OAuth flow on localhost:PORT without opening a browser here, and
    keep the refresh token. Returns where it was saved."""
    from google_auth_oauthlib.flow import InstalledAppFlow

    if not client_secrets.exists():
        raise CredentialsError(f"{client_secrets}: no such file (download a 'Desktop app' OAuth "
                               "client from the Google Cloud console)")
    flow = InstalledAppFlow.from_client_secrets_file(str(client_secrets), SCOPES)
    creds = flow.run_local_server(
        host="localhost", port=port, open_browser=False,
        authorization_prompt_message=(
            "Open this URL in a browser (on your laptop when this is an SSH session; keep "
            f"`ssh -L {port}:localhost:{port} THIS-SERVER` open):\n\n{{url}}\n"))
    write_private(token_path(), json.loads(creds.to_json()))
    return str(token_path())


@dataclass(frozen=True)
class Status:
    kind: str | None  # "service-account", "user", or None
    detail: str
    problems: list[str]


def status() -> Status:
    sa, tok = service_account_path(), token_path()
    problems = [p for p in (mode_problem(f) for f in (sa, tok) if f.exists()) if p]
    if sa.exists():
        email = json.loads(sa.read_text()).get("client_email", "?")
        return Status("service-account", f"service account {email} ({sa})", problems)
    if tok.exists():
        return Status("user", f"your Google account, saved token ({tok})", problems)
    return Status(None, "no credentials", problems)


def google_backends(spec: Any) -> Any:
    """Backends on the real services, from the saved credentials."""
    from core.backends.drive import Drive
    from core.backends.earthengine import EarthEngine
    from core.engine.worker import Backends

    current = status()
    if current.kind is None:
        raise CredentialsError("no Google credentials: run `eebatch auth login --client-secrets "
                               "FILE` or `eebatch auth service-account KEY.json`")
    if current.problems:
        raise CredentialsError(current.problems[0])
    project = spec.backend.project
    if current.kind == "service-account":
        import ee
        from pydrive2.auth import GoogleAuth
        from pydrive2.drive import GoogleDrive

        path = service_account_path()
        email = json.loads(path.read_text())["client_email"]
        earth = EarthEngine.for_google(project, ee.ServiceAccountCredentials(email, str(path)))
        gauth = GoogleAuth(settings={
            "client_config_backend": "service",
            "service_config": {"client_json_file_path": str(path)},
            "oauth_scope": ["https://www.googleapis.com/auth/drive"]}, http_timeout=60)
        gauth.ServiceAuth()
        drive = Drive(GoogleDrive(gauth))
    else:
        from google.oauth2.credentials import Credentials
        from oauth2client.client import OAuth2Credentials
        from pydrive2.auth import GoogleAuth
        from pydrive2.drive import GoogleDrive

        info = json.loads(token_path().read_text())
        earth = EarthEngine.for_google(project, Credentials.from_authorized_user_info(info))
        gauth = GoogleAuth(settings_file=None, http_timeout=60)
        # pydrive2 speaks oauth2client; the same refresh token serves both clients.
        gauth.credentials = OAuth2Credentials(
            None, info["client_id"], info["client_secret"], info["refresh_token"], None,
            info.get("token_uri", TOKEN_URI), "eebatch")
        gauth.Refresh()
        gauth.Authorize()
        drive = Drive(GoogleDrive(gauth))
    return Backends(earth, drive if spec.export.destination == "drive" else None)
