"""Small files that really encode huge images (decompression bombs inside the pixel limit), written at
test time: a GIF whose LZW strings grow to the 4,095-pixel maximum, a PNG of zero rows deflated at level 9,
a progressive JPEG of flat colour. Each decodes to side x side pixels without any truncation."""

import io
import struct
import zlib


def gif_bomb(side):
    """A side x side single-colour GIF in ~side^2/2000 bytes (7000: ~23 KB). LZW codes are emitted so that
    each one's string is one pixel longer than the last (the decoder's KwKwK case); when the table has
    4,096 entries the longest string is repeated without a clear code (deferred clear: the decoder keeps
    adding entries it can never be asked for) until stb's 8,192-entry limit comes near."""
    min_size = 2
    clear, eoi = 1 << min_size, (1 << min_size) + 1
    out = bytearray()
    acc = nbits = 0

    def emit(code, width):
        nonlocal acc, nbits
        acc |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8

    remaining = side * side
    width = min_size + 1
    while remaining > 0:
        emit(clear, width)  # read at the width the decoder has reached
        # Mirror of the decoder's state after a clear code.
        width, avail = min_size + 1, clear + 2
        emit(0, width)  # one pixel; no entry added (no previous code)
        remaining -= 1
        length, code_of_len = 1, {1: 0}
        while remaining > 0 and avail < 8000:
            if avail < 4096:
                code, length = avail, length + 1  # KwKwK: the entry the decoder is about to make
                code_of_len[length] = code
            else:
                code = code_of_len[length]
            if length > remaining:  # the last pixels: an existing entry of exactly that length
                length = remaining
                code = code_of_len[length]
            emit(code, width)
            remaining -= length
            avail += 1
            if (avail & ((1 << width) - 1)) == 0 and avail <= 0x0FFF:
                width += 1
    emit(eoi, width)
    if nbits:
        out.append(acc & 0xFF)
    blocks = bytearray()
    for i in range(0, len(out), 255):
        chunk = out[i:i + 255]
        blocks += bytes([len(chunk)]) + chunk
    header = b"GIF89a" + struct.pack("<HHBBB", side, side, 0x81, 0, 0) + bytes([0, 0, 0, 255, 255, 255,
                                                                               0, 0, 0, 0, 0, 0])
    descriptor = b"," + struct.pack("<HHHHB", 0, 0, side, side, 0)
    return header + descriptor + bytes([min_size]) + bytes(blocks) + b"\x00;"


def png_bomb(side):
    """A side x side black RGB PNG: zero rows deflated at level 9 (7000: ~143 KB)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    z = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * side)
    parts = [z.compress(row) for _ in range(side)]
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) +
            chunk(b"IEND", b""))


def progressive_jpeg_bomb(side):
    """A side x side progressive JPEG of flat colour (4:2:0, PIL's default; stb keeps every DCT
    coefficient of every component until the last scan)."""
    from PIL import Image
    img = Image.new("RGB", (side, side), (90, 140, 200))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, progressive=True)
    return buf.getvalue()
