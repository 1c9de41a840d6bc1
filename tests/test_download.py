"""The weights download (alta.backbones.clip._download) on a local file:// URL: no network.

OpenAI's URLs carry the file's SHA-256 as their last folder; the same layout on disk lets the
download path run for real, with its progress bar (tqdm, shown only on a terminal) and checks.
"""

from __future__ import annotations

import hashlib

import pytest

from alta.backbones.clip import _download
from alta.errors import BackboneError


def test_download_writes_the_file_and_checks_its_sha256(tmp_path, capsys):
    payload = bytes(range(256)) * 9000  # 2.3 MB: several 1 MiB blocks
    digest = hashlib.sha256(payload).hexdigest()
    source = tmp_path / "server" / digest / "RN50.pt"
    source.parent.mkdir(parents=True)
    source.write_bytes(payload)
    target = tmp_path / "cache" / "RN50.pt"
    _download(source.as_uri(), target, timeout=5)
    assert target.read_bytes() == payload

    wrong = tmp_path / "server" / ("0" * 64) / "RN50.pt"
    wrong.parent.mkdir()
    wrong.write_bytes(payload)
    with pytest.raises(BackboneError, match="SHA256 does not match"):
        _download(wrong.as_uri(), tmp_path / "cache" / "other.pt", timeout=5)
    assert not (tmp_path / "cache" / "other.pt").exists()  # nothing half-written is left
