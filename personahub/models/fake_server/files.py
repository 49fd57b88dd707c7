"""The loopback server's files route: batch input files uploaded, batch output files served.

What the OpenAI Files API does for the Batch API, in memory and bounded. Multipart bodies are read
with the standard library's email parser (cgi is gone from Python 3.13), once per upload.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser

#: one upload's size bound (OpenAI takes 200 MB; this server holds files in memory)
FILE_MAX_BYTES = 128 * 1024 * 1024
#: all stored files together; past it an upload is refused until files are deleted
STORE_MAX_BYTES = 512 * 1024 * 1024
UPLOAD_PURPOSES = ("batch",)


class FileProblem(Exception):
    """An upload or lookup the server refuses: the HTTP status and the message."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param = status, param


@dataclass(frozen=True)
class StoredFile:
    """One file: its bytes and the object the API describes it with."""

    file_id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def describe(self) -> dict[str, object]:
        return {"id": self.file_id, "object": "file", "bytes": len(self.data),
                "created_at": self.created_at, "filename": self.filename,
                "purpose": self.purpose, "status": "processed", "expires_at": None,
                "status_details": None}


def new_id(prefix: str) -> str:
    """Return an id shaped as the OpenAI API's."""
    return f"{prefix}{os.urandom(12).hex()}"


class FileStore:
    """Files by id, bounded in total size (thread-safe: the server answers on many threads)."""

    def __init__(self, max_bytes: int = STORE_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._files: dict[str, StoredFile] = {}
        self._held = 0
        self._lock = threading.Lock()

    def add(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        """Store data; a 400 problem when the store would pass its bound."""
        stored = StoredFile(new_id("file-"), filename, purpose, data, int(time.time()))
        with self._lock:
            if self._held + len(data) > self.max_bytes:
                raise FileProblem(400, f"this server holds at most {self.max_bytes} bytes of "
                                  "files; delete some (DELETE /v1/files/ID) and upload again")
            self._files[stored.file_id] = stored
            self._held += len(data)
        return stored

    def get(self, file_id: str) -> StoredFile:
        """Return the file, or a 404 problem."""
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise FileProblem(404, f"No such File object: {file_id}", "id")
        return stored

    def delete(self, file_id: str) -> dict[str, object]:
        """Forget a file (404 when unknown); the API's deletion answer."""
        with self._lock:
            stored = self._files.pop(file_id, None)
            if stored is not None:
                self._held -= len(stored.data)
        if stored is None:
            raise FileProblem(404, f"No such File object: {file_id}", "id")
        return {"id": file_id, "object": "file", "deleted": True}

    def listing(self, purpose: str | None = None) -> dict[str, object]:
        """Every file (of a purpose), newest first, as the API lists them."""
        with self._lock:
            files = [f for f in self._files.values() if purpose in (None, f.purpose)]
        files.sort(key=lambda f: f.created_at, reverse=True)
        return {"object": "list", "data": [f.describe() for f in files], "has_more": False}


def parse_upload(content_type: str, body: bytes) -> tuple[str, str, bytes]:
    """Filename, purpose and bytes of a multipart upload, or a problem."""
    if "boundary=" not in content_type:
        raise FileProblem(400, "a file upload is multipart/form-data with a boundary")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise FileProblem(400, "a file upload is multipart/form-data with a boundary")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    if "file" not in fields:
        raise FileProblem(400, "Missing required parameter: 'file'.", "file")
    if "purpose" not in fields:
        raise FileProblem(400, "Missing required parameter: 'purpose'.", "purpose")
    purpose = fields["purpose"][1].decode("utf-8", "replace").strip()
    if purpose not in UPLOAD_PURPOSES:
        raise FileProblem(400, f"Invalid value for 'purpose': {purpose!r}; this server takes "
                          f"{', '.join(UPLOAD_PURPOSES)} files only", "purpose")
    filename, data = fields["file"]
    return filename or "upload.jsonl", purpose, data
