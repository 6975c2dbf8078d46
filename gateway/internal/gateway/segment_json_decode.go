package gateway

import (
	"bytes"
	"encoding/base64"
	"math"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/paligemma-serve/paligemma-serve/gateway/gen/paligemma/v1"
)

// A /v1/segment body is almost all one base64 string (the photo). protojson walks that string rune by
// rune, scans it again for "-_" to pick the alphabet, then decodes it into a second copy: 0.6 ms for a
// 328 KB body where encoding/base64 alone needs 0.11 ms (codec_bench_test.go). decodeSegmentRequest
// leaves the long string to bytes.IndexByte and encoding/base64 and gives up (false) on anything it
// does not handle exactly as protojson does; the caller then runs protojson on the same body, so every
// error, and every odd but valid input (numbers as strings or with exponents, unknown fields under
// DiscardUnknown), is protojson's. It must never accept what protojson rejects nor build a different
// message: TestSegmentRequestJSONMatchesProtojson and FuzzSegmentRequestJSON check both.

// Field bits of SegmentRequest and SegmentOptions, for protojson's duplicate-field rule (which applies
// across the JSON and proto spellings of a name).
const (
	fPrompt = 1 << iota
	fImageData
	fImageURL
	fModelID
	fMaxNewTokens
	fOptions
	fIncludeImage
	fIncludeFullMasks
)

// fastDecodeOK says whether decodeSegmentRequest's results are protojson's under these options. A
// RecursionLimit of 1 would reject "options"; DiscardUnknown only matters for unknown fields, which
// always fall back.
func fastDecodeOK(o protojson.UnmarshalOptions) bool {
	return o.RecursionLimit == 0 || o.RecursionLimit >= 2
}

type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// consume skips whitespace and then c.
func (s *jsonScanner) consume(c byte) bool {
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// peek skips whitespace and returns the next byte (0 at the end).
func (s *jsonScanner) peek() byte {
	s.skipSpace()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// literal reads null, true or false; object checks what follows.
func (s *jsonScanner) literal(word string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(word)) {
		return false
	}
	s.i += len(word)
	return true
}

func (s *jsonScanner) boolean() (v, ok bool) {
	switch s.peek() {
	case 't':
		return true, s.literal("true")
	case 'f':
		return false, s.literal("false")
	}
	return false, false
}

// int32 reads a plain integer in int32 range; fractions, exponents and quoted numbers go to protojson.
func (s *jsonScanner) int32() (int32, bool) {
	s.skipSpace()
	b, i := s.b, s.i
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	start := i
	var v int64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' && i-start <= 10 {
		v = v*10 + int64(b[i]-'0')
		i++
	}
	if n := i - start; n == 0 || n > 10 || (n > 1 && b[start] == '0') {
		return 0, false
	}
	if neg {
		v = -v
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, false
	}
	s.i = i
	return int32(v), true
}

// str reads a JSON string with protojson's rules (valid UTF-8, no raw control characters, its escapes
// and surrogate-pair handling). The result aliases the body when there was nothing to unescape.
func (s *jsonScanner) str() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	b := s.b
	start := s.i
	var out []byte // nil until the first escape
	for i := start; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			if out == nil {
				return b[start:i], true
			}
			return out, true
		case c < ' ':
			return nil, false
		case c == '\\':
			if out == nil {
				out = append(make([]byte, 0, i-start+16), b[start:i]...)
			}
			var ok bool
			if out, i, ok = unescape(out, b, i); !ok {
				return nil, false
			}
		case c < utf8.RuneSelf:
			if out != nil {
				out = append(out, c)
			}
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				return nil, false
			}
			if out != nil {
				out = append(out, b[i:i+n]...)
			}
			i += n
		}
	}
	return nil, false
}

// unescape appends the escape at b[i] (a backslash) to out, as protojson's string parser does.
func unescape(out, b []byte, i int) ([]byte, int, bool) {
	if i+1 >= len(b) {
		return nil, 0, false
	}
	switch c := b[i+1]; c {
	case '"', '\\', '/':
		return append(out, c), i + 2, true
	case 'b':
		return append(out, '\b'), i + 2, true
	case 'f':
		return append(out, '\f'), i + 2, true
	case 'n':
		return append(out, '\n'), i + 2, true
	case 'r':
		return append(out, '\r'), i + 2, true
	case 't':
		return append(out, '\t'), i + 2, true
	case 'u':
		r, ok := hex4(b, i+2)
		if !ok {
			return nil, 0, false
		}
		i += 6
		if utf16.IsSurrogate(r) {
			if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
				return nil, 0, false
			}
			r2, ok := hex4(b, i+2)
			if r = utf16.DecodeRune(r, r2); !ok || r == unicode.ReplacementChar {
				return nil, 0, false
			}
			i += 6
		}
		return utf8.AppendRune(out, r), i, true
	}
	return nil, 0, false
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// base64Bytes reads a string holding bytes. The common case (no escapes) never looks at the string
// byte by byte in Go: IndexByte finds its end and rules out escapes and the raw newlines that
// encoding/base64 would skip but JSON forbids; any other byte that JSON or base64 forbids fails the
// decode.
func (s *jsonScanner) base64Bytes() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	rest := s.b[s.i:]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return nil, false
	}
	src := rest[:end]
	if bytes.IndexByte(src, '\\') >= 0 {
		s.i-- // back to the quote: let str unescape it
		var ok bool
		if src, ok = s.str(); !ok {
			return nil, false
		}
	} else {
		if bytes.IndexByte(src, '\n') >= 0 || bytes.IndexByte(src, '\r') >= 0 {
			return nil, false
		}
		s.i += end + 1
	}
	return decodeBase64(src)
}

// decodeBase64 gives protojson's result: URL alphabet when the string has '-' or '_', unpadded when its
// length is not a multiple of 4. The standard alphabet is tried first because it rejects '-' and '_'
// wherever they are, so the "-_" scan is only needed when that fails.
func decodeBase64(src []byte) ([]byte, bool) {
	std, url := base64.StdEncoding, base64.URLEncoding
	if len(src)%4 != 0 {
		std, url = base64.RawStdEncoding, base64.RawURLEncoding
	}
	dst := make([]byte, std.DecodedLen(len(src)))
	if n, err := std.Decode(dst, src); err == nil {
		return dst[:n], true
	}
	if bytes.IndexAny(src, "-_") < 0 {
		return nil, false
	}
	n, err := url.Decode(dst, src)
	if err != nil {
		return nil, false
	}
	return dst[:n], true
}

// object reads {"name": value, ...}, calling field for each name with the scanner before the value;
// field returns false to give up. Every value must be followed by ',' or '}' (after whitespace): that
// is stricter than protojson's delimiter rule, so a number or literal read here ends where protojson's
// does ("7x", "1.5", "truex" give up).
func (s *jsonScanner) object(field func(name []byte, seen *int) bool) bool {
	if !s.consume('{') {
		return false
	}
	if s.peek() == '}' {
		s.i++
		return true
	}
	seen := 0
	for {
		name, ok := s.str()
		if !ok || !s.consume(':') || !field(name, &seen) {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// mark records field bit f, failing on a second occurrence; null reports a JSON null value, which
// protojson skips (after the duplicate check) for every field here.
func (s *jsonScanner) mark(seen *int, f int) (null, ok bool) {
	if *seen&f != 0 {
		return false, false
	}
	*seen |= f
	if s.peek() == 'n' {
		return true, s.literal("null")
	}
	return false, true
}

func (s *jsonScanner) text(dst *string) bool {
	v, ok := s.str()
	*dst = string(v)
	return ok
}

// decodeSegmentRequest sets req from body when it can do so exactly as protojson would; see above.
func decodeSegmentRequest(body []byte, req *pb.SegmentRequest) bool {
	proto.Reset(req)
	s := &jsonScanner{b: body}
	ok := s.object(func(name []byte, seen *int) bool {
		var f int
		switch string(name) {
		case "prompt":
			f = fPrompt
		case "imageData", "image_data":
			f = fImageData
		case "imageUrl", "image_url":
			f = fImageURL
		case "modelId", "model_id":
			f = fModelID
		case "maxNewTokens", "max_new_tokens":
			f = fMaxNewTokens
		case "options":
			f = fOptions
		default:
			return false
		}
		null, ok := s.mark(seen, f)
		if !ok || null {
			return ok
		}
		switch f {
		case fPrompt:
			return s.text(&req.Prompt)
		case fImageData:
			req.ImageData, ok = s.base64Bytes()
			return ok
		case fImageURL:
			return s.text(&req.ImageUrl)
		case fModelID:
			return s.text(&req.ModelId)
		case fMaxNewTokens:
			v, ok := s.int32()
			req.MaxNewTokens = &v
			return ok
		default:
			req.Options = &pb.SegmentOptions{}
			return s.segmentOptions(req.Options)
		}
	})
	if !ok {
		return false
	}
	s.skipSpace()
	return s.i == len(s.b)
}

func (s *jsonScanner) segmentOptions(o *pb.SegmentOptions) bool {
	return s.object(func(name []byte, seen *int) bool {
		var dst **bool
		var f int
		switch string(name) {
		case "includeImage", "include_image":
			dst, f = &o.IncludeImage, fIncludeImage
		case "includeFullMasks", "include_full_masks":
			dst, f = &o.IncludeFullMasks, fIncludeFullMasks
		default:
			return false
		}
		null, ok := s.mark(seen, f)
		if !ok || null {
			return ok
		}
		v, ok := s.boolean()
		*dst = &v
		return ok
	})
}
