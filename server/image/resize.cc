// PIL's bicubic resize, transcribed from Pillow's libImaging/Resample.c (unchanged from Pillow 7 to
// 10) so the result is bit-exact with Image.resize(size, Image.BICUBIC) on 8-bit L and RGB images:
// - filter: bicubic with a = -0.5, support 2; when shrinking the filter is widened by the scale
//   (filterscale = max(scale, 1)), which is PIL's antialiasing;
// - per output pixel, weights over [xmin, xmin + n) are normalised to sum 1 in double, then
// converted to
//   fixed point with PRECISION_BITS = 22 and rounding half away from zero;
// - the horizontal pass runs first (only over the source rows the vertical pass will read), its
// result is
//   clipped to uint8, then the vertical pass; a pass whose size does not change is skipped.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "server/image/image.h"

namespace pg::image {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double BicubicFilter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // per output pixel: first input index, count
  std::vector<int32_t> k;   // per output pixel: ksize fixed-point weights
};

// precompute_coeffs + normalize_coeffs_8bpc for the box [0, in_size).
Coeffs Precompute(int in_size, int out_size) {
  constexpr double kSupport = 2.0;
  const float in0 = 0.0f, in1 = static_cast<float>(in_size);
  double scale = static_cast<double>(in1 - in0) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = kSupport * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(out_size) * 2);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    // (int) truncates toward zero exactly as the C code does.
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = BicubicFilter((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[static_cast<size_t>(xx) * c.ksize + x] =
          v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPrecisionBits))
                : static_cast<int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[xx * 2] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  return c;
}

uint8_t Clip8(int32_t in) {
  if (in >= (1 << kPrecisionBits << 8)) return 255;
  if (in <= 0) return 0;
  return static_cast<uint8_t>(in >> kPrecisionBits);
}

// Rows [row0, row0 + rows) of src, resampled horizontally to out_w.
Image Horizontal(const Image& src, int row0, int rows, int out_w, const Coeffs& c) {
  const int ch = src.channels;
  Image out{out_w, rows, ch, std::vector<uint8_t>(static_cast<size_t>(out_w) * rows * ch)};
  for (int yy = 0; yy < rows; ++yy) {
    const uint8_t* in = &src.pixels[static_cast<size_t>(yy + row0) * src.width * ch];
    uint8_t* o = &out.pixels[static_cast<size_t>(yy) * out_w * ch];
    for (int xx = 0; xx < out_w; ++xx) {
      const int xmin = c.bounds[xx * 2], xmax = c.bounds[xx * 2 + 1];
      const int32_t* k = &c.k[static_cast<size_t>(xx) * c.ksize];
      for (int b = 0; b < ch; ++b) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < xmax; ++x) ss += in[(x + xmin) * ch + b] * k[x];
        o[xx * ch + b] = Clip8(ss);
      }
    }
  }
  return out;
}

// Vertical pass; bounds are relative to src's first row (row_shift subtracted).
Image Vertical(const Image& src, int out_h, const Coeffs& c, int row_shift) {
  const int ch = src.channels;
  const size_t stride = static_cast<size_t>(src.width) * ch;
  Image out{src.width, out_h, ch, std::vector<uint8_t>(stride * out_h)};
  for (int yy = 0; yy < out_h; ++yy) {
    const int ymin = c.bounds[yy * 2] - row_shift, ymax = c.bounds[yy * 2 + 1];
    const int32_t* k = &c.k[static_cast<size_t>(yy) * c.ksize];
    uint8_t* o = &out.pixels[yy * stride];
    for (size_t i = 0; i < stride; ++i) {
      int32_t ss = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < ymax; ++y) ss += src.pixels[(y + ymin) * stride + i] * k[y];
      o[i] = Clip8(ss);
    }
  }
  return out;
}

}  // namespace

struct RowResizer::State {
  int width = 0, height = 0, channels = 1;
  bool vertical = false;
  Coeffs vert;
  int row_shift = 0;
  Image rows;  // the horizontal pass's output (or the source when only the height changes)
};

RowResizer::RowResizer(const Image& src, int width, int height) {
  auto s = std::make_shared<State>();
  s->width = width > 0 ? width : 0;
  s->height = height > 0 ? height : 0;
  s->channels = src.channels;
  if (s->width == 0 || s->height == 0 || src.width <= 0 || src.height <= 0 ||
      (width == src.width && height == src.height)) {
    // Same size is a copy; degenerate sizes are zeros (as ResizeBicubic).
    s->rows =
        (width == src.width && height == src.height)
            ? src
            : Image{s->width, s->height, src.channels,
                    std::vector<uint8_t>(static_cast<size_t>(s->width) * s->height * src.channels)};
    state_ = std::move(s);
    return;
  }
  s->vertical = height != src.height;
  s->vert = Precompute(src.height, height);
  const int ybox_first = s->vert.bounds[0];
  const int ybox_last = s->vert.bounds[height * 2 - 2] + s->vert.bounds[height * 2 - 1];
  if (width != src.width) {
    s->rows =
        Horizontal(src, ybox_first, ybox_last - ybox_first, width, Precompute(src.width, width));
    s->row_shift = ybox_first;
  } else {
    s->rows = src;
  }
  state_ = std::move(s);
}

void RowResizer::Row(int yy, uint8_t* o) const {
  const State& s = *state_;
  const size_t stride = static_cast<size_t>(s.rows.width) * s.channels;
  if (!s.vertical) {
    std::copy_n(&s.rows.pixels[static_cast<size_t>(yy) * stride], stride, o);
    return;
  }
  const int ymin = s.vert.bounds[yy * 2] - s.row_shift, ymax = s.vert.bounds[yy * 2 + 1];
  const int32_t* k = &s.vert.k[static_cast<size_t>(yy) * s.vert.ksize];
  // The same sums as Vertical(), taken row by row so that the inner loop vectorises.
  std::vector<int32_t> acc(stride, 1 << (kPrecisionBits - 1));
  for (int y = 0; y < ymax; ++y) {
    const uint8_t* in = &s.rows.pixels[static_cast<size_t>(y + ymin) * stride];
    const int32_t w = k[y];
    for (size_t i = 0; i < stride; ++i) acc[i] += in[i] * w;
  }
  for (size_t i = 0; i < stride; ++i) o[i] = Clip8(acc[i]);
}

Image ResizeBicubic(const Image& src, int width, int height) {
  if (width == src.width && height == src.height) return src;  // PIL: same size and box is a copy
  if (width <= 0 || height <= 0 || src.width <= 0 || src.height <= 0) {
    return Image{width > 0 ? width : 0, height > 0 ? height : 0, src.channels,
                 std::vector<uint8_t>(static_cast<size_t>(width > 0 ? width : 0) *
                                      (height > 0 ? height : 0) * src.channels)};
  }
  const bool need_horizontal = width != src.width;
  const bool need_vertical = height != src.height;
  const Coeffs horiz = Precompute(src.width, width);
  const Coeffs vert = Precompute(src.height, height);
  // The source rows the vertical pass reads: the horizontal pass only computes those.
  const int ybox_first = vert.bounds[0];
  const int ybox_last = vert.bounds[height * 2 - 2] + vert.bounds[height * 2 - 1];
  if (need_horizontal) {
    Image tmp = Horizontal(src, ybox_first, ybox_last - ybox_first, width, horiz);
    return need_vertical ? Vertical(tmp, height, vert, ybox_first) : tmp;
  }
  return Vertical(src, height, vert, 0);
}

}  // namespace pg::image
