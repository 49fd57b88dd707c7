"""A named input file is a regular file within its cap, read by a reader that stops at the cap:
a device, a FIFO or a folder is refused before anything is read, in one line naming the flag."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from personahub.core.errors import InputFileError, UsageError
from personahub.core.input_files import (
    UnusableInputError,
    check_input_file,
    open_input,
    open_text_input,
    read_input_bytes,
)


def test_a_regular_file_within_its_cap_is_read(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes("\ufeffa,b\n1,2\n".encode())
    assert check_input_file(path, "--humans", max_bytes=100) == path
    assert read_input_bytes(path, max_bytes=100) == "\ufeffa,b\n1,2\n".encode()
    with open_text_input(path, max_bytes=100) as f:
        assert f.read() == "a,b\n1,2\n"  # the byte-order mark dropped


def test_what_is_no_regular_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it to read would wait for a writer
    cases = {fifo: "is a FIFO (named pipe), not a regular file",
             tmp_path: "is a folder; give a file",
             Path("/dev/zero"): "is a character device, not a regular file"}
    for path, reason in cases.items():
        with pytest.raises(UnusableInputError) as info:
            read_input_bytes(path, "--humans")
        assert str(info.value) == f"--humans {path}: {reason}"
        assert isinstance(info.value, UsageError)  # exit 2, as a bad flag value
    with pytest.raises(InputFileError, match=r"^--humans .*none.csv: file not found \(give a CSV\)$"
                       ) as missing:
        check_input_file(tmp_path / "none.csv", "--humans", hint="give a CSV")
    assert not isinstance(missing.value, UsageError)  # exit 1, as every missing input


def test_a_file_over_its_cap_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"x" * 3000)
    with pytest.raises(UnusableInputError, match=r"big.jsonl: is 3,000 bytes, larger than the "
                                                 r"2,048 bytes such a file may be; give a smaller"):
        check_input_file(path, max_bytes=2048)
    assert check_input_file(path, max_bytes=None) == path  # a streaming reader takes any size


def test_a_file_that_grows_past_its_cap_while_read_is_stopped(tmp_path: Path) -> None:
    path = tmp_path / "growing.csv"
    path.write_bytes(b"a" * 100)
    with open_input(path, max_bytes=150) as f:
        with open(path, "ab") as writer:
            writer.write(b"b" * 100)
        with pytest.raises(UnusableInputError, match="grew past the 150 bytes"):
            f.read()
