package gateway

import (
	"encoding/base64"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/paligemma-serve/paligemma-serve/gateway/gen/paligemma/v1"
)

// A /v1/segment answer is mostly base64 (the ~240 KB model-input PNG and the masks). protojson reaches
// every field through reflection, base64-encodes into a fresh string, then copies it while checking it
// rune by rune for characters to escape. appendSegmentResponse writes the same JSON (protojson's
// field order, escapes and number formats, without its random spaces) into one buffer sized up front,
// with base64 encoded straight into it. It reports false where protojson would fail (invalid UTF-8) or
// where it would have to guess protojson's output (a nil mask entry); the caller then uses protojson.

// fastEncodeOK says whether appendSegmentResponse writes what protojson would under these options:
// proto names, unpopulated fields emitted, one line. Enum, Any and required-field options do not apply
// to SegmentResponse.
func fastEncodeOK(o protojson.MarshalOptions) bool {
	return o.UseProtoNames && o.EmitUnpopulated && !o.Multiline && o.Indent == ""
}

func segmentResponseSize(r *pb.SegmentResponse) int {
	enc := base64.StdEncoding
	n := 512 + enc.EncodedLen(len(r.Image)) + len(r.Text) + len(r.ModelId)
	for _, m := range r.Masks {
		n += 192 + enc.EncodedLen(len(m.GetMask())) + enc.EncodedLen(len(m.GetFullMask())) + len(m.GetLabel()) +
			12*(len(m.GetCoordinates())+len(m.GetBox()))
	}
	return n
}

func appendSegmentResponse(out []byte, r *pb.SegmentResponse) ([]byte, bool) {
	if out == nil {
		out = make([]byte, 0, segmentResponseSize(r))
	}
	ok := true
	out = append(out, `{"image":"`...)
	out = base64.StdEncoding.AppendEncode(out, r.Image)
	out = append(out, `","masks":[`...)
	for i, m := range r.Masks {
		if m == nil {
			return nil, false
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"mask":"`...)
		out = base64.StdEncoding.AppendEncode(out, m.Mask)
		out = append(out, `","coordinates":`...)
		out = appendInt32s(out, m.Coordinates)
		out = append(out, `,"label":`...)
		out, ok = appendJSONString(out, m.Label)
		if !ok {
			return nil, false
		}
		out = append(out, `,"box":`...)
		out = appendInt32s(out, m.Box)
		out = append(out, `,"full_mask":"`...)
		out = base64.StdEncoding.AppendEncode(out, m.FullMask)
		out = append(out, `","has_mask":`...)
		out = strconv.AppendBool(out, m.HasMask)
		out = append(out, '}')
	}
	out = append(out, `],"text":`...)
	if out, ok = appendJSONString(out, r.Text); !ok {
		return nil, false
	}
	out = append(out, `,"model_id":`...)
	if out, ok = appendJSONString(out, r.ModelId); !ok {
		return nil, false
	}
	out = append(out, `,"width":`...)
	out = strconv.AppendInt(out, int64(r.Width), 10)
	out = append(out, `,"height":`...)
	out = strconv.AppendInt(out, int64(r.Height), 10)
	out = append(out, `,"timings":`...)
	out = appendTimings(out, r.Timings)
	return append(out, '}'), true
}

func appendInt32s(out []byte, v []int32) []byte {
	out = append(out, '[')
	for i, x := range v {
		if i > 0 {
			out = append(out, ',')
		}
		out = strconv.AppendInt(out, int64(x), 10)
	}
	return append(out, ']')
}

// appendTimings: an unset message is null under EmitUnpopulated.
func appendTimings(out []byte, t *pb.Timings) []byte {
	if t == nil {
		return append(out, "null"...)
	}
	for _, f := range [...]struct {
		name string
		v    float64
	}{
		{`{"queue_ms":`, t.QueueMs}, {`,"fetch_ms":`, t.FetchMs}, {`,"preprocess_ms":`, t.PreprocessMs},
		{`,"vision_ms":`, t.VisionMs}, {`,"prefill_ms":`, t.PrefillMs}, {`,"decode_ms":`, t.DecodeMs},
		{`,"masks_ms":`, t.MasksMs}, {`,"total_ms":`, t.TotalMs},
	} {
		out = append(out, f.name...)
		out = appendJSONDouble(out, f.v)
	}
	return append(out, '}')
}

// appendJSONDouble formats like protojson (encoding/json's rules, with NaN and infinities as strings).
func appendJSONDouble(out []byte, n float64) []byte {
	switch {
	case math.IsNaN(n):
		return append(out, `"NaN"`...)
	case math.IsInf(n, +1):
		return append(out, `"Infinity"`...)
	case math.IsInf(n, -1):
		return append(out, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(n); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	out = strconv.AppendFloat(out, n, format, -1, 64)
	if format == 'e' {
		// e-07 -> e-7, as encoding/json does.
		if k := len(out); k >= 4 && out[k-4] == 'e' && out[k-3] == '-' && out[k-2] == '0' {
			out[k-2] = out[k-1]
			out = out[:k-1]
		}
	}
	return out
}

// appendJSONString quotes s with protojson's escapes (only '"', '\\' and control characters; short
// forms where JSON has them, else \u00XX) and fails on invalid UTF-8, which protojson refuses to write.
func appendJSONString(out []byte, s string) ([]byte, bool) {
	out = append(out, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return nil, false
			}
			i += n
			continue
		}
		if c >= ' ' && c != '"' && c != '\\' {
			i++
			continue
		}
		out = append(out, s[start:i]...)
		out = append(out, '\\')
		switch c {
		case '"', '\\':
			out = append(out, c)
		case '\b':
			out = append(out, 'b')
		case '\f':
			out = append(out, 'f')
		case '\n':
			out = append(out, 'n')
		case '\r':
			out = append(out, 'r')
		case '\t':
			out = append(out, 't')
		default:
			out = append(out, 'u')
			out = append(out, "0000"[1+(bits.Len32(uint32(c))-1)/4:]...)
			out = strconv.AppendUint(out, uint64(c), 16)
		}
		i++
		start = i
	}
	out = append(out, s[start:]...)
	return append(out, '"'), true
}
