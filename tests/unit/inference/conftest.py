from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture
def dicom_bytes():
    def read(name: str) -> bytes:
        return (TEST_FILES / name).read_bytes()

    return read
