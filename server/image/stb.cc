// The one translation unit that compiles stb_image and stb_image_write.
//
// Only the formats the server accepts are compiled in, so that a file stb could otherwise read
// (PSD, TGA, HDR, PIC, PNM) can never reach a decoder even if the magic-byte sniffing in decode.cc
// were bypassed. STBI_NO_STDIO: everything is decoded from memory. STBI_FAILURE_USERMSG: readable
// failure reasons. stb_image 2.27 keeps its failure reason in a thread_local under C++11, so
// concurrent decodes are safe.
#include "server/image/decoder_memory.h"

// Counted allocations: the decode budget's estimates are checked against what stb really holds.
#define STBI_MALLOC(size) pg::image::DecoderMalloc(size)
#define STBI_REALLOC(p, size) pg::image::DecoderRealloc(p, size)
#define STBI_FREE(p) pg::image::DecoderFree(p)
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

#define STBI_WRITE_NO_STDIO
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
