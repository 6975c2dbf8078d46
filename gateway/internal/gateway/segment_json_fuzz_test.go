package gateway

// Differential fuzz tests of the hand-written /v1/segment JSON code against protojson:
//
//	go test ./internal/gateway -run '^$' -fuzz '^FuzzSegmentRequestJSON$' -fuzztime 60s
//	go test ./internal/gateway -run '^$' -fuzz '^FuzzSegmentResponseJSON$' -fuzztime 60s
//
// Without -fuzz they run their seeds (and anything saved under testdata/fuzz/) as ordinary tests.

import (
	"math"
	"testing"

	pb "github.com/paligemma-serve/paligemma-serve/gateway/gen/paligemma/v1"
)

func FuzzSegmentRequestJSON(f *testing.F) {
	for _, body := range fastRequestBodies {
		f.Add([]byte(body))
	}
	for _, body := range slowRequestBodies {
		f.Add([]byte(body))
	}
	f.Add(benchRequestBody(3 << 10))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkRequestJSON(t, body)
	})
}

func FuzzSegmentResponseJSON(f *testing.F) {
	f.Add([]byte("\x89PNG"), "<loc0001><loc0002><loc0003><loc0004> cat", "tiny", "cat", int32(448), 12.5, true)
	f.Add([]byte{}, "", "", "", int32(0), 0.0, false)
	f.Add([]byte{0xff}, "\"\\/\b\f\n\r\t\x00\x1f\x7f é \u2028\ufffd", "\xff", "\xc3", int32(math.MinInt32), 1e-7, true)
	f.Add([]byte("x"), "a", "b", "c", int32(-1), 1e21, false)
	f.Fuzz(func(t *testing.T, img []byte, text, model, label string, n int32, ms float64, timings bool) {
		r := &pb.SegmentResponse{Image: img, Text: text, ModelId: model, Width: n, Height: -n,
			Masks: []*pb.ObjectMask{{Mask: img, Label: label, Coordinates: []int32{n, 1}, HasMask: timings}, {FullMask: img}}}
		if timings {
			r.Timings = &pb.Timings{TotalMs: ms, QueueMs: -ms, DecodeMs: ms / 3}
		}
		if math.IsNaN(ms) {
			return // proto.Equal never equates NaN; TestSegmentResponseJSONMatchesProtojson covers its bytes
		}
		checkResponseJSON(t, r)
	})
}
