#!/usr/bin/python3
"""Writes the small golden fixtures of tests/unit/image_test.cc into tests/fixtures/image/.

Run once with Debian's python3 (PIL 9.4, numpy) and commit the output; the C++ tests never need python.
Everything "expected" here is what PIL computes, because the reference application preprocesses with PIL
(transformers' load_image: ImageOps.exif_transpose, convert("RGB"), then Image.resize(..., BICUBIC)).

Raw pixel files (*.rgb, *.grey) are interleaved 8-bit rows without header; manifest.json gives their sizes.
"""
import io
import json
import os
import struct
import zlib

import numpy as np
from PIL import Image, ImageOps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "image")
CHELSEA = os.path.join(ROOT, "tests", "fixtures", "images", "chelsea.png")

manifest = {"pil_version": Image.__version__, "resize": [], "decode": [], "exif": []}


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def raw(im):
    return np.asarray(im).tobytes()


def png_bytes(w, h, color_type, bit_depth, rows, extra_chunks=()):
    """A hand-made PNG (PIL cannot write 16-bit RGB or grey+alpha 16)."""

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    body = b"".join(b"\0" + r for r in rows)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    for t, d in extra_chunks:
        out += chunk(t, d)
    return out + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- resize goldens (exact)
rng = np.random.default_rng(1234)
chelsea = Image.open(CHELSEA).convert("RGB")
sources = {
    "chelsea_crop": chelsea.crop((200, 60, 264, 108)),  # 64x48 RGB photo
    "noise_rgb": Image.fromarray(rng.integers(0, 256, (17, 23, 3), dtype=np.uint8), "RGB"),
    "noise_grey": Image.fromarray(rng.integers(0, 256, (19, 31), dtype=np.uint8), "L"),
    "chelsea_grey": chelsea.crop((100, 100, 140, 130)).convert("L"),  # 40x30
}
sizes = {
    "chelsea_crop": [(37, 29), (101, 77), (64, 20), (20, 90), (7, 5), (64, 48)],
    "noise_rgb": [(50, 9), (7, 40), (1, 1), (23, 60), (46, 34)],
    "noise_grey": [(13, 47), (31, 5), (62, 19), (3, 2)],
    "chelsea_grey": [(17, 61), (80, 60), (11, 8)],
}
for name, im in sources.items():
    ext = "rgb" if im.mode == "RGB" else "grey"
    src_file = f"resize_{name}.{ext}"
    write(src_file, raw(im))
    for w, h in sizes[name]:
        out = im.resize((w, h), Image.BICUBIC)
        out_file = f"resize_{name}_{w}x{h}.{ext}"
        write(out_file, raw(out))
        manifest["resize"].append({
            "src": src_file, "width": im.width, "height": im.height,
            "channels": 3 if ext == "rgb" else 1,
            "out": out_file, "out_width": w, "out_height": h})

# ---------------------------------------------------------------- lossless decodes (exact vs convert("RGB"))
def add_decode(file, data, note):
    write(file, data)
    im = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    rgb = im.convert("RGB")
    exp = file.rsplit(".", 1)[0] + ".expected.rgb"
    write(exp, raw(rgb))
    manifest["decode"].append({"file": file, "expected": exp, "width": rgb.width, "height": rgb.height,
                               "pil_mode": Image.open(io.BytesIO(data)).mode, "note": note})


def saved(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


base = np.zeros((12, 20, 3), np.uint8)
base[..., 0] = np.arange(20)[None, :] * 12
base[..., 1] = np.arange(12)[:, None] * 20
base[:6, :10, 2] = 200
base_im = Image.fromarray(base, "RGB")
alpha = Image.fromarray(rng.integers(0, 256, (12, 20), dtype=np.uint8), "L")

add_decode("grey.png", saved(base_im.convert("L"), "PNG"), "8-bit grey replicated")
add_decode("palette.png", saved(base_im.quantize(16), "PNG"), "palette expanded")
pal_t = base_im.quantize(16)
add_decode("palette_trns.png", saved(pal_t, "PNG", transparency=3), "palette + tRNS: transparency dropped")
rgba = base_im.copy()
rgba.putalpha(alpha)
add_decode("rgba.png", saved(rgba, "PNG"), "alpha dropped, not composited")
la = base_im.convert("L")
la.putalpha(alpha)
add_decode("grey_alpha.png", saved(la, "PNG"), "grey+alpha: grey replicated, alpha dropped")
add_decode("bilevel.png", saved(base_im.convert("1"), "PNG"), "1-bit grey: 0/255")
rgb16 = (rng.integers(0, 65536, (5, 7, 3))).astype(">u2")
add_decode("rgb16.png", png_bytes(7, 5, 2, 16, [r.tobytes() for r in rgb16]),
           "16-bit RGB: PIL keeps the high byte (v >> 8)")
grey16 = np.concatenate([rng.integers(0, 256, (3, 7)), rng.integers(0, 65536, (2, 7))]).astype(">u2")
add_decode("grey16.png", png_bytes(7, 5, 0, 16, [r.tobytes() for r in grey16]),
           "16-bit grey: PIL opens mode I and convert('RGB') clamps to 255 (not >> 8)")
la16 = rng.integers(0, 65536, (5, 7, 2)).astype(">u2")
add_decode("grey_alpha16.png", png_bytes(7, 5, 4, 16, [r.tobytes() for r in la16]),
           "16-bit grey+alpha: PIL keeps the high byte")
add_decode("rgb.bmp", saved(base_im, "BMP"), "24-bit BMP")
add_decode("palette.bmp", saved(base_im.quantize(16), "BMP"), "8-bit palette BMP")
frame2 = Image.fromarray(255 - base, "RGB")
add_decode("two_frames.gif",
           saved(base_im.quantize(16), "GIF", save_all=True, append_images=[frame2.quantize(16)]),
           "GIF: first frame only")
add_decode("rgb.png", saved(base_im, "PNG"), "8-bit RGB")

# EXIF orientation in a PNG eXIf chunk: PIL's exif_transpose honours it too.
exif6 = Image.Exif()
exif6[0x0112] = 6
add_decode("rgb_exif6.png", saved(base_im, "PNG", exif=exif6.tobytes()), "PNG eXIf orientation 6")

# ---------------------------------------------------------------- EXIF orientation on JPEG (tolerance)
# Big flat blocks so the JPEG error stays small; asymmetric in both axes.
blk = np.zeros((16, 32, 3), np.uint8)
blk[:8, :8] = (255, 0, 0)
blk[:8, 8:16] = (0, 255, 0)
blk[:8, 16:32] = (0, 0, 255)
blk[8:, :16] = (255, 255, 0)
blk[8:, 16:24] = (255, 255, 255)
blk[8:, 24:] = (0, 0, 0)
blk_im = Image.fromarray(blk, "RGB")
for n in range(1, 9):
    e = Image.Exif()
    e[0x0112] = n
    data = saved(blk_im, "JPEG", quality=95, exif=e.tobytes())
    f = f"orient{n}.jpg"
    write(f, data)
    t = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    write(f"orient{n}.expected.rgb", raw(t))
    manifest["exif"].append({"file": f, "expected": f"orient{n}.expected.rgb", "width": t.width,
                             "height": t.height, "orientation": n})


def jpeg_with_app1(payload):
    """The plain JPEG with an APP1 segment inserted after SOI."""
    plain = saved(blk_im, "JPEG", quality=95)
    seg = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return plain[:2] + seg + plain[2:]


# Big-endian (MM) TIFF with orientation 8, written by hand (PIL writes II).
tiff_mm = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + \
    struct.pack(">HHIHH", 0x0112, 3, 1, 8, 0) + struct.pack(">I", 0)
data = jpeg_with_app1(b"Exif\0\0" + tiff_mm)
write("orient8_mm.jpg", data)
t = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
write("orient8_mm.expected.rgb", raw(t))
manifest["exif"].append({"file": "orient8_mm.jpg", "expected": "orient8_mm.expected.rgb",
                         "width": t.width, "height": t.height, "orientation": 8})

# Malformed EXIF: IFD offset past the end, then an entry count running past the end. Must decode unrotated.
for i, tiff in enumerate([b"II\x2a\x00" + struct.pack("<I", 4000),
                          b"II\x2a\x00" + struct.pack("<I", 8) + struct.pack("<H", 300) + b"\x12\x01"]):
    write(f"bad_exif{i}.jpg", jpeg_with_app1(b"Exif\0\0" + tiff))
write("bad_exif.expected.rgb", raw(Image.open(io.BytesIO(saved(blk_im, "JPEG", quality=95))).convert("RGB")))

# A PNG whose IHDR claims 100000 x 100000 (and no real data).
write("huge_header.png", png_bytes(100000, 100000, 2, 8, []))

with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
    f.write("\n")
print("wrote", len(os.listdir(OUT)), "files to", OUT)
