"""`eebatch auth` keeps credentials private; `eebatch doctor` says what is wrong and what to do.
Nothing here contacts Google: doctor runs against the emulator."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

from core import paths
from core.emulator.app import Emulator
from tests.conftest import BASE_JOB, write_job

ROOT = Path(__file__).parents[1]


def eebatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tui", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ}, timeout=120, stdin=subprocess.DEVNULL)


def _key(tmp_path: Path) -> tuple[Path, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    key = {"type": "service_account", "client_email": "runner@proj.iam.gserviceaccount.com",
           "private_key": pem, "private_key_id": "abc", "token_uri": "http://127.0.0.1:9/token"}
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key))
    return path, pem


def test_service_account_key_is_stored_0600_and_never_printed(tmp_path: Path) -> None:
    key, pem = _key(tmp_path)
    result = eebatch("auth", "service-account", str(key))
    assert result.returncode == 0, result.stderr
    saved = paths.config_dir() / "service-account.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.config_dir().stat().st_mode) == 0o700
    assert json.loads(saved.read_text())["private_key"] == pem
    status = eebatch("auth", "status")
    assert "runner@proj.iam.gserviceaccount.com" in status.stdout
    secret_line = pem.splitlines()[1]
    for out in (result, status):
        assert secret_line not in out.stdout + out.stderr


def test_a_bad_key_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "authorized_user"}')
    result = eebatch("auth", "service-account", str(bad))
    assert result.returncode == 2 and "not a service-account key" in result.stderr
    assert not (paths.config_dir() / "service-account.json").exists()


def test_a_readable_credentials_file_is_reported(tmp_path: Path) -> None:
    key, _ = _key(tmp_path)
    assert eebatch("auth", "service-account", str(key)).returncode == 0
    (paths.config_dir() / "service-account.json").chmod(0o644)
    status = eebatch("auth", "status")
    assert status.returncode == 1 and "chmod 600" in status.stdout


def test_doctor_on_a_healthy_emulator_job(tmp_path: Path) -> None:
    with Emulator() as emu:
        job = write_job(tmp_path, BASE_JOB + f'\n[backend]\nkind = "emulator"\nurl = "{emu.url}"\n')
        result = eebatch("doctor", str(job))
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("emulator", "earth engine", "drive", "export folder", "output dir"):
        assert any(line.startswith("ok") and name in line for line in result.stdout.splitlines())


def test_doctor_says_what_to_do_when_nothing_answers(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    job = write_job(tmp_path, BASE_JOB + f'\n[backend]\nkind = "emulator"\n'
                                         f'url = "http://127.0.0.1:{port}"\n')
    result = eebatch("doctor", str(job))
    assert result.returncode == 1
    assert f"eebatch emulator --port {port}" in result.stdout


def test_doctor_without_credentials_for_the_real_service(tmp_path: Path) -> None:
    job = write_job(tmp_path, BASE_JOB + '\n[backend]\nkind = "earthengine"\nproject = "p"\n')
    result = eebatch("doctor", str(job))
    assert result.returncode == 1 and "eebatch auth login" in result.stdout
