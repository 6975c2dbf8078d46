"""paligemma-client: ask paligemma-serve to segment an image and show the answer.

Sends an image (a file, or an http(s) URL the client downloads itself) and a prompt to the gRPC server
(paligemma.v1.SegmentService/Segment) or, with --gateway, to the REST gateway's POST /v1/segment; prints each
object's label and box; writes every mask as a PNG and an overlay PNG: the image with translucent coloured
masks, box outlines and labels.

Python with Debian's packages only (python3-grpcio, python3-protobuf, python3-pil): nothing to compile, the
same interpreter the exporter uses, and Pillow draws the overlay. The message classes are the ones the build
generates with plain protoc (build/python; /app/python in the container image; or $PG_PROTO_PYTHON).
"""
import argparse
import base64
import io
import json
import os
import sys
import urllib.request
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

# Distinct, saturated colours (Tableau 10), cycled over the objects.
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
MASK_ALPHA = 0.45  # how much of the colour covers a masked pixel


# --------------------------------------------------------------------------------------------- the answer
class Segment:
    """One object of an answer, whichever API it came from."""

    def __init__(self, label="", box=None, coordinates=None, mask=b"", full_mask=b"", has_mask=None):
        self.label = label
        self.box = list(box or [])                  # [x_min, y_min, x_max, y_max] in original-image pixels
        self.coordinates = list(coordinates or [])  # the same box in model-input pixels (the original app's)
        self.mask = mask                            # 64x64 grey PNG (bytes), the VAE's output inside the box
        self.full_mask = full_mask                  # binary PNG the size of the original image (bytes)
        self.has_mask = bool(mask or full_mask) if has_mask is None else has_mask


def segments_from_proto(response):
    return [Segment(m.label, m.box, m.coordinates, m.mask, m.full_mask, m.has_mask) for m in response.masks]


def segments_from_json(doc):
    """A JSON answer: the gateway's POST /segment or /v1/segment, or paligemma-segment's output."""

    def png(value):
        return base64.b64decode(value) if value else b""

    return [Segment(m.get("label", ""), m.get("box"), m.get("coordinates"), png(m.get("mask")),
                    png(m.get("full_mask")), m.get("has_mask")) for m in doc.get("masks", [])]


# --------------------------------------------------------------------------------------------- the overlay
def mask_in_image(segment, size):
    """The object's mask as an 'L' image of `size` (255 inside), or None when it has none."""
    if segment.full_mask:
        m = Image.open(io.BytesIO(segment.full_mask)).convert("L")
        return m if m.size == size else m.resize(size, Image.NEAREST)
    if segment.mask and len(segment.box) == 4:
        # The 64x64 mask covers the box: stretch it over the box, threshold like the server (> 127 = inside).
        x0, y0, x1, y1 = segment.box
        w, h = max(1, x1 - x0), max(1, y1 - y0)
        small = Image.open(io.BytesIO(segment.mask)).convert("L").resize((w, h), Image.BILINEAR)
        small = small.point(lambda v: 255 if v > 127 else 0)
        m = Image.new("L", size, 0)
        m.paste(small, (x0, y0))
        return m
    return None


def draw_overlay(image, segments):
    """The image (RGB, original size) with each mask tinted, each box outlined and labelled."""
    base = image.convert("RGB")
    out = base.copy()
    for i, s in enumerate(segments):
        colour = PALETTE[i % len(PALETTE)]
        mask = mask_in_image(s, base.size)
        if mask is not None:
            tint = Image.blend(out, Image.new("RGB", base.size, colour), MASK_ALPHA)
            out.paste(tint, (0, 0), mask)
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    width = max(2, round(min(base.size) / 200))
    for i, s in enumerate(segments):
        if len(s.box) != 4:
            continue
        colour = PALETTE[i % len(PALETTE)]
        x0, y0, x1, y1 = s.box
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=colour, width=width)
        text = s.label or f"object {i + 1}"
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        tw, th = r - l + 6, b - t + 4
        ty = y0 - th if y0 - th >= 0 else y0  # above the box, or inside it at the top edge
        draw.rectangle([x0, ty, x0 + tw, ty + th], fill=colour)
        draw.text((x0 + 3 - l, ty + 2 - t), text, fill=(255, 255, 255), font=font)
    return out


def write_outputs(image, segments, out_dir):
    """Writes mask-N.png (64x64), full-mask-N.png and overlay.png into out_dir; returns the overlay's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(segments, 1):
        if s.mask:
            (out_dir / f"mask-{i}.png").write_bytes(s.mask)
        if s.full_mask:
            (out_dir / f"full-mask-{i}.png").write_bytes(s.full_mask)
    overlay = out_dir / "overlay.png"
    draw_overlay(image, segments).save(overlay)
    return overlay


# --------------------------------------------------------------------------------------------- the calls
def load_protos():
    here = Path(__file__).resolve().parent
    for d in (os.environ.get("PG_PROTO_PYTHON"), here.parent / "build" / "python", "/app/python"):
        if d and (Path(d) / "paligemma" / "v1" / "paligemma_pb2.py").exists():
            sys.path.insert(0, str(d))
            break
    try:
        from paligemma.v1 import paligemma_pb2
    except ImportError as e:
        raise SystemExit("paligemma-client: the generated paligemma_pb2 is missing: build the project "
                         f"(cmake --build build) or set PG_PROTO_PYTHON ({e})")
    return paligemma_pb2


def segment_grpc(target, prompt, image_bytes, model_id="", max_new_tokens=None, timeout=300):
    import grpc

    pb = load_protos()
    request = pb.SegmentRequest(prompt=prompt, image_data=image_bytes, model_id=model_id,
                                options=pb.SegmentOptions(include_full_masks=True, include_image=False))
    if max_new_tokens is not None:
        request.max_new_tokens = max_new_tokens
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/paligemma.v1.SegmentService/Segment",
                                   request_serializer=pb.SegmentRequest.SerializeToString,
                                   response_deserializer=pb.SegmentResponse.FromString)
        response = call(request, timeout=timeout)
    return response.text, segments_from_proto(response)


def segment_rest(gateway, prompt, image_bytes, model_id="", max_new_tokens=None, timeout=300):
    body = {"prompt": prompt, "image_data": base64.b64encode(image_bytes).decode(), "model_id": model_id,
            "options": {"include_full_masks": True, "include_image": False}}
    if max_new_tokens is not None:
        body["max_new_tokens"] = max_new_tokens
    req = urllib.request.Request(gateway.rstrip("/") + "/v1/segment", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        doc = json.load(r)
    return doc.get("text", ""), segments_from_json(doc)


def read_image_bytes(source):
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as r:
            return r.read()
    return Path(source).read_bytes()


def main(argv=None):
    p = argparse.ArgumentParser(prog="paligemma-client", description=__doc__.split("\n\n")[0])
    p.add_argument("image", help="image file or http(s) URL")
    p.add_argument("prompt", nargs="?", default="segment", help='e.g. "segment left wheel"')
    p.add_argument("--server", default=os.environ.get("PG_SERVER", "localhost:50051"),
                   help="gRPC server host:port (default localhost:50051, $PG_SERVER)")
    p.add_argument("--gateway", help="use the REST gateway instead, e.g. http://localhost:8000")
    p.add_argument("--model-id", default="", help="model to use (default: the server's)")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--timeout", type=float, default=300, help="seconds (default 300)")
    p.add_argument("--out", default="out", help="folder for mask-N.png, full-mask-N.png, overlay.png")
    p.add_argument("--from-json", metavar="FILE",
                   help="draw a saved JSON answer (gateway /segment or /v1/segment) instead of calling")
    a = p.parse_args(argv)

    image_bytes = read_image_bytes(a.image)
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(image_bytes))).convert("RGB")
    if a.from_json:
        doc = json.loads(Path(a.from_json).read_text())
        text, segments = doc.get("text", ""), segments_from_json(doc)
    elif a.gateway:
        text, segments = segment_rest(a.gateway, a.prompt, image_bytes, a.model_id, a.max_new_tokens,
                                      a.timeout)
    else:
        text, segments = segment_grpc(a.server, a.prompt, image_bytes, a.model_id, a.max_new_tokens,
                                      a.timeout)
    print(f"answer: {text!r}")
    print(f"{len(segments)} object(s)")
    for i, s in enumerate(segments, 1):
        print(f"  {i}. {s.label or '(no label)'}  box={s.box}  mask={'yes' if s.has_mask else 'no'}")
    overlay = write_outputs(image, segments, a.out)
    print(f"wrote {overlay} ({image.width}x{image.height})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
