"""Replay log v1: framing constants and the record shapes shared by the writer and the reader.

The normative description is docs/replay-log.md; this module is its single source of numbers.
"""

from __future__ import annotations

import struct
import zlib

#: The first 8 bytes of every log (PNG-style: catches text-mode mangling and truncated copies).
FILE_MAGIC = b"\x89AQL\r\n\x1a\n"
FORMAT_NAME = "aql-replay"
FORMAT_VERSION = (1, 1)
#: From this version on, chunk headers carry a sequence number (1.0 wrote zeros there).
SEQUENCED_SINCE = (1, 1)

#: Chunk header: magic, codec, sequence number (3 bytes: the chunk's index in the file modulo 2**24, the
#: header's chunk being 0), record count, stored length, raw length, payload CRC, header CRC (of the 24 bytes
#: before it). Little-endian.
CHUNK_MAGIC = b"AQLC"
CHUNK_HEADER = struct.Struct("<4sB3sIIII")
SEQUENCE_MODULUS = 1 << 24
CHUNK_HEADER_SIZE = CHUNK_HEADER.size + 4
CODEC_NONE, CODEC_ZSTD = 0, 1
CODECS = {"none": CODEC_NONE, "zstd": CODEC_ZSTD}

#: Readers refuse chunks that claim more than this (a corrupt length, or a decompression bomb).
MAX_CHUNK_BYTES = 1 << 30

# Record type tags: every record is a msgpack array whose first element is one of these.
HEADER, EPISODE_START, STEP, EPISODE_END, LOG_END = 0, 1, 2, 3, 4
RECORD_NAMES = {HEADER: "header", EPISODE_START: "episode_start", STEP: "step", EPISODE_END: "episode_end",
                LOG_END: "log_end"}
RECORD_LENGTHS = {HEADER: 2, EPISODE_START: 4, STEP: 8, EPISODE_END: 4, LOG_END: 2}

OUTCOMES = ("win", "loss", "draw")


def crc32(data: bytes | memoryview) -> int:
    """CRC-32 (IEEE 802.3, as zlib, gzip and PNG compute it)."""
    return zlib.crc32(data) & 0xFFFFFFFF


def pack_chunk_header(codec: int, count: int, stored: bytes, raw_length: int, sequence: int) -> bytes:
    head = CHUNK_HEADER.pack(CHUNK_MAGIC, codec, (sequence % SEQUENCE_MODULUS).to_bytes(3, "little"), count,
                             len(stored), raw_length, crc32(stored))
    return head + crc32(head).to_bytes(4, "little")


def split_chunks(data: bytes) -> list[bytes]:
    """A log's chunks as byte strings (after the file magic), cut at their headers' stored lengths without any
    checking: for tools and tests that edit a log chunk by chunk (the reader is what validates)."""
    chunks, pos = [], len(FILE_MAGIC)
    while pos < len(data):
        end = pos + CHUNK_HEADER_SIZE + CHUNK_HEADER.unpack_from(data, pos)[4]
        chunks.append(data[pos:end])
        pos = end
    return chunks
