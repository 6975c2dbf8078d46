package gateway

import (
	"bytes"
	"io"
	"slices"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/proto"

	pb "github.com/paligemma-serve/paligemma-serve/gateway/gen/paligemma/v1"
)

// bodyJSONPb is runtime.JSONPb with faster /v1/segment JSON. JSONPb's own decoder first scans the body
// into a json.RawMessage with encoding/json and then hands it to protojson: for a /v1/segment body with a
// photo that scan was 7x the cost of protojson itself (4.1 ms vs 0.6 ms for 328 KB, codec_bench_test.go).
// This one reads the body and gives it to protojson directly. An empty body still decodes as "no fields"
// (io.EOF, which the generated handlers accept), as it did with JSONPb.
//
// SegmentRequest and SegmentResponse, whose base64 images are most of the gateway's per-request work,
// go through hand-written code (segment_json_*.go) that hands anything it does not handle exactly like
// protojson back to protojson, so results and errors stay protojson's.
type bodyJSONPb struct {
	*runtime.JSONPb
}

func (m bodyJSONPb) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v interface{}) error {
		body, err := readBody(r)
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(body)) == 0 {
			return io.EOF
		}
		if req, ok := v.(*pb.SegmentRequest); ok && fastDecodeOK(m.UnmarshalOptions) && decodeSegmentRequest(body, req) {
			return nil
		}
		if msg, ok := v.(proto.Message); ok {
			return m.UnmarshalOptions.Unmarshal(body, msg)
		}
		return m.JSONPb.Unmarshal(body, v)
	})
}

func (m bodyJSONPb) Marshal(v interface{}) ([]byte, error) {
	if resp, ok := v.(*pb.SegmentResponse); ok && resp != nil && fastEncodeOK(m.MarshalOptions) {
		if out, ok := appendSegmentResponse(nil, resp); ok {
			return out, nil
		}
	}
	return m.JSONPb.Marshal(v)
}

func (m bodyJSONPb) NewEncoder(w io.Writer) runtime.Encoder {
	return runtime.EncoderFunc(func(v interface{}) error {
		out, err := m.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := w.Write(out); err != nil {
			return err
		}
		_, err = w.Write(m.Delimiter())
		return err
	})
}

// sizedBody is a request body that knows its Content-Length (cappedBody; -1 when not sent).
type sizedBody interface {
	contentLength() int64
}

// readBody is io.ReadAll that, given the length, reads a body of up to 1 MiB into one buffer of that
// size: growing from 512 bytes, io.ReadAll allocated and copied about 4x a 328 KB body. Larger bodies
// double towards their length, so a client that announces 25 MB and sends little holds little.
func readBody(r io.Reader) ([]byte, error) {
	sb, ok := r.(sizedBody)
	if !ok || sb.contentLength() < 0 {
		return io.ReadAll(r)
	}
	want := int(sb.contentLength()) + 1 // room to see io.EOF without growing
	b := make([]byte, 0, min(want, 1<<20))
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = slices.Grow(b, max(min(2*cap(b), want), cap(b)+512)-len(b))
		}
	}
}
