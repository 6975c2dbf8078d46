// EXIF orientation: reading the tag from JPEG/PNG bytes and applying it like PIL's
// ImageOps.exif_transpose. Internal to pg_image (decode.cc); exposed in a header so the tests can
// reach it directly.
#pragma once

#include <string_view>

#include "server/image/image.h"

namespace pg::image {

// The orientation (1..8) in the first EXIF block of a JPEG (APP1 "Exif\0") or a PNG (eXIf chunk),
// as PIL reads it. Returns 1 when there is none or when the EXIF is malformed: a broken EXIF never
// fails a decode.
int ReadExifOrientation(std::string_view file_bytes);

// The orientation parsed from a TIFF structure (the bytes after "Exif\0\0"); 1 when absent or
// malformed.
int OrientationFromTiff(std::string_view tiff);

// Applies orientation 2..8 as exif_transpose does (2 mirror, 3 rotate 180, 4 flip, 5 transpose,
// 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise); 1 or anything else is a
// copy.
Image ApplyOrientation(const Image& src, int orientation);

}  // namespace pg::image
