package gateway

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/paligemma-serve/paligemma-serve/gateway/gen/paligemma/v1"
)

// The whole /v1/segment path through the gateway against a direct gRPC call to the same in-process
// backend: the difference is what the gateway adds per request (HTTP, JSON decode and encode, the second
// gRPC hop's marshalling). Client and server share the machine, so absolute numbers include both sides.
func benchBackend(b *testing.B) (*grpc.ClientConn, *fakeBackend) {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	fake := &fakeBackend{resp: realisticResponse()}
	s := grpc.NewServer()
	pb.RegisterSegmentServiceServer(s, fake)
	pb.RegisterModelServiceServer(s, fake)
	go func() { _ = s.Serve(lis) }()
	b.Cleanup(s.Stop)
	conn, err := Dial(lis.Addr().String(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return conn, fake
}

func BenchmarkRoundTripGRPC(b *testing.B) {
	conn, _ := benchBackend(b)
	client := pb.NewSegmentServiceClient(conn)
	req := &pb.SegmentRequest{Prompt: "segment cat", ImageData: benchImage(240 << 10), MaxNewTokens: proto.Int32(32)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := client.Segment(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRoundTripGateway(b *testing.B) {
	conn, _ := benchBackend(b)
	gw, err := New(DefaultConfig(), conn)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	b.Cleanup(srv.Close)
	body := benchRequestBody(240 << 10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := http.Post(srv.URL+"/v1/segment", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n < 240<<10 {
			b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
		}
	}
}
