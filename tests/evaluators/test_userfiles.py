"""Reading a user's file (``evaluators/userfiles.py``): bounded before it is read, UTF-8, one line."""

import pytest

from evaluators.userfiles import UnreadableFile, read_text


def test_read_text_refuses_missing_large_and_binary_files_with_the_reason(tmp_path):
    ok = tmp_path / "ok.json"
    ok.write_text("{}")
    assert read_text(ok, 2, "spec file") == "{}"
    (tmp_path / "big.json").write_text("{ }")
    with pytest.raises(UnreadableFile, match=r"^3 bytes; a spec file has at most 2$"):
        read_text(tmp_path / "big.json", 2, "spec file")
    with pytest.raises(UnreadableFile, match=r"^cannot read it \(No such file or directory\)$"):
        read_text(tmp_path / "missing", 10, "spec file")
    (tmp_path / "bin").write_bytes(b"\xff")
    with pytest.raises(UnreadableFile, match=r"^not UTF-8 text \(invalid start byte at byte 0\)$"):
        read_text(tmp_path / "bin", 10, "template")
