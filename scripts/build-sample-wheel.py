#!/usr/bin/env python3
"""Build the tiny ``moneyfmt`` wheel that the setup-project example installs offline.

A wheel is a zip archive: the package's files plus a ``<name>-<version>.dist-info``
folder holding METADATA, WHEEL and RECORD. Entries get a fixed timestamp and order, so
running this again produces a byte-identical file.

    python3 scripts/build-sample-wheel.py
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

NAME = "moneyfmt"
VERSION = "0.1.0"
TAG = "py3-none-any"

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "setup-project"
SOURCE = EXAMPLE / "wheel-src" / NAME
OUT_DIR = EXAMPLE / "sample" / "wheels"

METADATA = f"""\
Metadata-Version: 2.1
Name: {NAME}
Version: {VERSION}
Summary: Format integer amounts of cents as money strings.
Requires-Python: >=3.8
License: Apache-2.0
"""

WHEEL = f"""\
Wheel-Version: 1.0
Generator: trestle build-sample-wheel.py
Root-Is-Purelib: true
Tag: {TAG}
"""

FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def build() -> Path:
    dist_info = f"{NAME}-{VERSION}.dist-info"
    files: list[tuple[str, bytes]] = [
        (f"{NAME}/{p.name}", p.read_bytes()) for p in sorted(SOURCE.glob("*.py"))
    ]
    files.append((f"{dist_info}/METADATA", METADATA.encode()))
    files.append((f"{dist_info}/WHEEL", WHEEL.encode()))
    record = "".join(f"{name},{record_hash(data)},{len(data)}\n" for name, data in files)
    record += f"{dist_info}/RECORD,,\n"
    files.append((f"{dist_info}/RECORD", record.encode()))

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    target = OUT_DIR / f"{NAME}-{VERSION}-{TAG}.whl"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as whl:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            whl.writestr(info, data)
    return target


if __name__ == "__main__":
    print(build())
