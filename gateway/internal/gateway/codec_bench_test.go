package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
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

func BenchmarkProtojsonDecodeSegmentRequest(b *testing.B) {
	body := benchRequestBody(130 << 10)
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		var req pb.SegmentRequest
		if err := (protojson.UnmarshalOptions{}).Unmarshal(body, &req); err != nil {
			b.Fatal(err)
		}
	}
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

// The decoder the generated /v1 routes use (bodyJSONPb) against grpc-gateway's own JSONPb decoder.
func benchDecoder(b *testing.B, m runtime.Marshaler) {
	body := benchRequestBody(240 << 10)
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		var req pb.SegmentRequest
		if err := m.NewDecoder(bytes.NewReader(body)).Decode(&req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecoderGatewayJSONPb(b *testing.B) { benchDecoder(b, &runtime.JSONPb{}) }

func BenchmarkDecoderBodyJSONPb(b *testing.B) { benchDecoder(b, bodyJSONPb{&runtime.JSONPb{}}) }
