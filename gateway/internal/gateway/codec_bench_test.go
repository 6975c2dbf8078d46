package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/rand"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/paligemma-serve/paligemma-serve/gateway/gen/paligemma/v1"
)

// Serving overhead of the gateway's JSON route is mostly its codec: these measure decoding a
// /v1/segment body with a photo-sized image_data and encoding a response with masks.
func benchImage(n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(1)).Read(b)
	return b
}

func benchRequestBody(n int) []byte {
	body, _ := json.Marshal(map[string]any{"prompt": "segment cat", "image_data": base64.StdEncoding.EncodeToString(benchImage(n)),
		"max_new_tokens": 32})
	return body
}

func benchResponse() *pb.SegmentResponse {
	r := &pb.SegmentResponse{Image: benchImage(120 << 10), Text: "<loc0001><loc0002><loc0003><loc0004> cat", ModelId: "tiny",
		Width: 448, Height: 448, Timings: &pb.Timings{TotalMs: 12}}
	for i := 0; i < 4; i++ {
		r.Masks = append(r.Masks, &pb.ObjectMask{Mask: benchImage(2 << 10), Coordinates: []int32{1, 2, 3, 4}, Box: []int32{1, 2, 3, 4},
			Label: "cat", HasMask: true, FullMask: benchImage(8 << 10)})
	}
	return r
}

// realisticResponse is what the tiny model answers for the 240 KB chelsea.png: the model-input image as
// PNG, a few 64x64 PNG masks with their full-size masks, the answer text and stage timings.
func realisticResponse() *pb.SegmentResponse {
	r := &pb.SegmentResponse{Image: benchImage(240 << 10), Text: "<loc0256><loc0128><loc0768><loc0896><seg012><seg034> cat ; <loc0100><loc0200><loc0300><loc0400> ear",
		ModelId: "google/paligemma2-3b-mix-224", Width: 451, Height: 300,
		Timings: &pb.Timings{QueueMs: 0.012, PreprocessMs: 3.25, VisionMs: 41.5, PrefillMs: 12.75, DecodeMs: 331.0625, MasksMs: 2.5, TotalMs: 391.0995}}
	for i := 0; i < 3; i++ {
		r.Masks = append(r.Masks, &pb.ObjectMask{Mask: benchImage(1200), Coordinates: []int32{56, 28, 168, 196}, Box: []int32{113, 38, 338, 262},
			Label: "cat", HasMask: true, FullMask: benchImage(3000)})
	}
	return r
}

func BenchmarkProtojsonEncodeSegmentResponse(b *testing.B) {
	r := benchResponse()
	for i := 0; i < b.N; i++ {
		out, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(out)))
	}
}

func BenchmarkFormResponseEncode(b *testing.B) {
	r := benchResponse()
	for i := 0; i < b.N; i++ {
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(toFormResponse(r)); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(buf.Len()))
	}
}

// The decoder the generated /v1 routes use (bodyJSONPb) against grpc-gateway's own JSONPb decoder. The
// Sized variant reads the body as the gateway does (cappedBody knows the Content-Length).
func benchDecoder(b *testing.B, m runtime.Marshaler, sized bool) {
	body := benchRequestBody(240 << 10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var r io.Reader = bytes.NewReader(body)
		if sized {
			r = &cappedBody{ReadCloser: io.NopCloser(r), size: int64(len(body))}
		}
		var req pb.SegmentRequest
		if err := m.NewDecoder(r).Decode(&req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecoderGatewayJSONPb(b *testing.B) { benchDecoder(b, &runtime.JSONPb{}, false) }

func BenchmarkDecoderBodyJSONPb(b *testing.B) { benchDecoder(b, bodyJSONPb{&runtime.JSONPb{}}, false) }

func BenchmarkDecoderBodyJSONPbSized(b *testing.B) {
	benchDecoder(b, bodyJSONPb{&runtime.JSONPb{}}, true)
}

// The 328 KB /v1/segment body, already read: protojson against the hand-written decoder.
func benchDecodeSegmentRequest(b *testing.B, decode func([]byte, *pb.SegmentRequest) error) {
	body := benchRequestBody(240 << 10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var req pb.SegmentRequest
		if err := decode(body, &req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeSegmentRequestProtojson(b *testing.B) {
	benchDecodeSegmentRequest(b, func(body []byte, req *pb.SegmentRequest) error {
		return protojson.Unmarshal(body, req)
	})
}

func BenchmarkDecodeSegmentRequestFast(b *testing.B) {
	benchDecodeSegmentRequest(b, func(body []byte, req *pb.SegmentRequest) error {
		if !decodeSegmentRequest(body, req) {
			return errors.New("declined")
		}
		return nil
	})
}

// The realistic answer (240 KB image, three masks) as the gateway writes it: protojson through
// grpc-gateway's JSONPb, and bodyJSONPb's hand-written encoder.
func benchEncoder(b *testing.B, m runtime.Marshaler) {
	r := realisticResponse()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		out, err := m.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(out)))
	}
}

func BenchmarkEncodeSegmentResponseJSONPb(b *testing.B) { benchEncoder(b, testMarshaler().JSONPb) }

func BenchmarkEncodeSegmentResponseBodyJSONPb(b *testing.B) { benchEncoder(b, testMarshaler()) }
