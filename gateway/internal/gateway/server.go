// Package gateway is the REST front of paligemma-server: the reference FastAPI app's endpoints (GET /,
// POST /segment with form fields), the JSON routes generated from the proto's google.api.http annotations
// (/v1/...), Swagger UI, health, limits and access logging. It translates, passes the caller's
// credentials on, and adds what only the HTTP side can (JSON-only /v1 bodies against CSRF, CORS, connection
// timeouts, HTTPS); every decision about who may do what is the gRPC server's.
package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/paligemma-serve/paligemma-serve/gateway/gen/paligemma/v1"
)

// Config holds the limits of one gateway.
type Config struct {
	// MaxBodyBytes caps every request body; more is 413.
	MaxBodyBytes int64
	// RequestTimeout bounds each request; it becomes the gRPC deadline. 0 means none.
	RequestTimeout time.Duration
	// ReadyTimeout bounds the /readyz health check.
	ReadyTimeout time.Duration
	// MetricsTimeout bounds the GetStats call each /metrics scrape makes to the server.
	MetricsTimeout time.Duration
	// Logger receives one JSON access-log record per request; nil logs nothing.
	Logger *slog.Logger
	// ErrorLogger receives what the gateway keeps from clients (internal error details, panics), under
	// the request id; nil means Logger.
	ErrorLogger *slog.Logger
	// CORSOrigins are the exact origins whose scripts may call the gateway (see browser.go); none: no CORS.
	CORSOrigins []string
}

// DefaultConfig is the documented defaults (25 MiB bodies, 300 s per request).
func DefaultConfig() Config {
	return Config{MaxBodyBytes: 25 << 20, RequestTimeout: 300 * time.Second, ReadyTimeout: 2 * time.Second,
		MetricsTimeout: 2 * time.Second}
}

// Server is the gateway's http.Handler.
type Server struct {
	cfg     Config
	segment pb.SegmentServiceClient
	health  healthpb.HealthClient
	gw      *runtime.ServeMux
	openapi []byte
	models  pb.ModelServiceClient
	metrics *httpMetrics
	promReg *prometheus.Registry
	handler http.Handler
}

// New builds the gateway over a connection to the gRPC server (see Dial).
func New(cfg Config, conn grpc.ClientConnInterface) (*Server, error) {
	origins, err := ParseCORSOrigins(strings.Join(cfg.CORSOrigins, ","))
	if err != nil {
		return nil, err
	}
	cfg.CORSOrigins = origins
	s := &Server{
		cfg:     cfg,
		segment: pb.NewSegmentServiceClient(conn),
		health:  healthpb.NewHealthClient(conn),
	}
	jsonpb := &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{},
	}
	s.gw = runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, bodyJSONPb{jsonpb}),
		runtime.WithErrorHandler(s.gatewayErrorHandler),
		runtime.WithRoutingErrorHandler(routingErrorHandler),
		runtime.WithMetadata(func(_ context.Context, r *http.Request) metadata.MD {
			return metadata.Pairs(requestIDKey, RequestID(r.Context()))
		}),
		runtime.WithForwardResponseOption(func(ctx context.Context, _ http.ResponseWriter, m proto.Message) error {
			if resp, ok := m.(*pb.SegmentResponse); ok {
				setModel(ctx, resp.GetModelId())
			}
			return nil
		}),
		runtime.WithIncomingHeaderMatcher(forwardNoHeaders),
		runtime.WithMiddlewares(s.onV1Route),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithWriteContentLength(),
	)
	ctx := context.Background()
	if err := pb.RegisterSegmentServiceHandlerClient(ctx, s.gw, s.segment); err != nil {
		return nil, err
	}
	models := pb.NewModelServiceClient(conn)
	if err := pb.RegisterModelServiceHandlerClient(ctx, s.gw, models); err != nil {
		return nil, err
	}
	s.models = models
	s.promReg, s.metrics = newMetricsRegistry()
	spec, err := OpenAPI()
	if err != nil {
		return nil, err
	}
	s.openapi = spec
	s.handler = s.withRequestID(s.withObservability(s.withRecover(s.withCORS(s.withLimits(
		s.withCredentials(http.HandlerFunc(s.route)))))))
	return s, nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// route dispatches the hand-written endpoints; everything else goes to the generated /v1 routes, whose
// routing error handler answers unknown paths (404) and wrong methods (405).
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	ctx := r.Context()
	switch {
	case p == "/":
		setRoute(ctx, "/")
		s.only(w, r, http.MethodGet, s.handleWelcome)
	case p == "/segment" || p == "/segment/":
		setRoute(ctx, "/segment")
		s.only(w, r, http.MethodPost, s.handleSegmentForm)
	case p == "/healthz":
		setRoute(ctx, "/healthz")
		s.only(w, r, http.MethodGet, s.handleHealthz)
	case p == "/readyz":
		setRoute(ctx, "/readyz")
		s.only(w, r, http.MethodGet, s.handleReadyz)
	case p == "/metrics":
		setRoute(ctx, "/metrics")
		s.only(w, r, http.MethodGet, s.handleMetrics)
	case p == "/openapi.json":
		setRoute(ctx, "/openapi.json")
		s.only(w, r, http.MethodGet, s.handleOpenAPI)
	case p == "/docs" || strings.HasPrefix(p, "/docs/"):
		setRoute(ctx, "/docs")
		s.only(w, r, http.MethodGet, s.handleDocs)
	default:
		s.gw.ServeHTTP(w, r)
	}
}

// only runs h for method (GET also admits HEAD) and answers 405 otherwise.
func (s *Server) only(w http.ResponseWriter, r *http.Request, method string, h http.HandlerFunc) {
	if r.Method == method || (method == http.MethodGet && r.Method == http.MethodHead) {
		h(w, r)
		return
	}
	w.Header().Set("Allow", method)
	WriteError(w, http.StatusMethodNotAllowed, http.StatusText(http.StatusMethodNotAllowed))
}

type welcome struct {
	Message string `json:"message"`
}

func (s *Server) handleWelcome(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, welcome{Message: "Welcome to the PaliGemma Segmentation API!"})
}

type healthBody struct {
	Status string `json:"status"`
}

// handleHealthz: the gateway process is alive (it does not look at the backend).
func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, healthBody{Status: "ok"})
}

// handleReadyz: the backend's grpc.health.v1 overall status is SERVING.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadyTimeout)
	defer cancel()
	// Health is open (probes carry no key): only the request id goes along.
	ctx = metadata.AppendToOutgoingContext(ctx, requestIDKey, RequestID(r.Context()))
	resp, err := s.health.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		_, detail := s.errorStatus(r, err)
		WriteError(w, http.StatusServiceUnavailable, "backend not ready: "+detail)
		return
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		WriteError(w, http.StatusServiceUnavailable, "backend not ready: "+resp.GetStatus().String())
		return
	}
	writeJSON(w, http.StatusOK, healthBody{Status: "ok"})
}
