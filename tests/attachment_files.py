"""Small real files for the attachment tests: a 1x1 PNG, a JPEG header, binaries that pose as text."""

import base64
import struct
import zlib


def png(width: int = 1, height: int = 1) -> bytes:
    """A valid PNG of one colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\x30\x90\xe0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PNG = png()
PNG_B64 = base64.b64encode(PNG).decode()
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n"
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256))  # a binary, NUL bytes and all
LATIN1 = "caf\xe9 cr\xe8me".encode("latin-1")  # not UTF-8
