// The generated Go client (gen/go/embedpool/v1) against a live embedpool pool.
//
// Driven by tests/integration/test_go_client.py, which passes:
//
//	EMBEDPOOL_TARGET        the pool's gRPC port (auth off)
//	EMBEDPOOL_AUTH_TARGET   a front of the same pool with bearer auth on
//	EMBEDPOOL_AUTH_TOKEN    a token that front accepts
//	EMBEDPOOL_EXPECTED      a JSON file: {"texts": [...], "vectors": [[...], ...]} from the Python client
package pooltest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	embedpoolv1 "github.com/embedpool/embedpool/gen/go/embedpool/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	model = "all-minilm-l6-v2"
	query = "Which planet is known as the Red Planet?"
)

var planets = []string{
	"Venus is often called Earth's twin because of its similar size and proximity.",
	"Mars, known for its reddish appearance, is often referred to as the Red Planet.",
	"Jupiter, the largest planet in our solar system, has a prominent red spot.",
	"Saturn, famous for its rings, is sometimes mistaken for the Red Planet.",
}

func dial(t *testing.T, env string) *grpc.ClientConn {
	t.Helper()
	target := os.Getenv(env)
	if target == "" {
		t.Fatalf("%s is not set: run this through tests/integration/test_go_client.py", env)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, target, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		t.Fatalf("dial %s: %v", target, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func pool(t *testing.T) embedpoolv1.EmbeddingServiceClient {
	return embedpoolv1.NewEmbeddingServiceClient(dial(t, "EMBEDPOOL_TARGET"))
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func dot(a, b []float32) float64 {
	s := 0.0
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func cosine(a, b []float32) float64 {
	return dot(a, b) / math.Sqrt(dot(a, a)*dot(b, b))
}

// decode reads VECTOR_ENCODING_BYTES data: little-endian float32, dimensions values.
func decode(t *testing.T, e *embedpoolv1.Embedding, dimensions uint32) []float32 {
	t.Helper()
	if len(e.Data) != int(dimensions)*4 {
		t.Fatalf("data has %d bytes, want %d", len(e.Data), dimensions*4)
	}
	out := make([]float32, dimensions)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(e.Data[i*4:]))
	}
	return out
}

func wantCode(t *testing.T, err error, code codes.Code, contains string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("got %v, want %v", err, code)
	}
	if !strings.Contains(st.Message(), contains) {
		t.Fatalf("message %q does not name %q", st.Message(), contains)
	}
}

func TestHealthPerModel(t *testing.T) {
	health := healthpb.NewHealthClient(dial(t, "EMBEDPOOL_TARGET"))
	for _, service := range []string{"", "embedpool.v1.EmbeddingService", model, model + "/onnx-cpu"} {
		resp, err := health.Check(ctx(t), &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("Check(%q): %v", service, err)
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q) = %v, want SERVING", service, resp.Status)
		}
	}
	_, err := health.Check(ctx(t), &healthpb.HealthCheckRequest{Service: "no-such-model"})
	wantCode(t, err, codes.NotFound, "")
}

func TestListModelsAndGetModel(t *testing.T) {
	c := pool(t)
	list, err := c.ListModels(ctx(t), &embedpoolv1.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if list.DefaultModel != model || list.Models[0].Name != model || list.Models[0].Dimensions != 384 {
		t.Fatalf("ListModels: default %q, first %q with %d dims", list.DefaultModel, list.Models[0].Name, list.Models[0].Dimensions)
	}
	got, err := c.GetModel(ctx(t), &embedpoolv1.GetModelRequest{Model: model})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, v := range got.Model.Variants {
		names = append(names, v.Name)
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "onnx-cpu,onnx-int8,openvino-cpu,torch-cpu" {
		t.Fatalf("GetModel variants: %v", names)
	}
	if got.Model.Limits.MaxInputsPerRequest == 0 {
		t.Fatal("GetModel: no limits")
	}
}

func TestEmbedWithSelectorAndInputType(t *testing.T) {
	c := pool(t)
	embed := func(sel *embedpoolv1.ModelSelector, it embedpoolv1.InputType) (*embedpoolv1.EmbedResponse, []float32) {
		resp, err := c.Embed(ctx(t), &embedpoolv1.EmbedRequest{Model: sel, Inputs: []string{query}, InputType: it})
		if err != nil {
			t.Fatal(err)
		}
		return resp, resp.Embeddings[0].Values
	}
	resp, v := embed(&embedpoolv1.ModelSelector{Model: model, Variant: "onnx-cpu"}, embedpoolv1.InputType_INPUT_TYPE_QUERY)
	if resp.Model != model || resp.Variant != "onnx-cpu" || len(v) != 384 || math.Abs(dot(v, v)-1) > 1e-4 {
		t.Fatalf("Embed: %s/%s, %d values, norm² %f", resp.Model, resp.Variant, len(v), dot(v, v))
	}
	// A model with query and document instructions: the input type changes the vector.
	instructed := &embedpoolv1.ModelSelector{Model: "instructor-style"}
	_, q := embed(instructed, embedpoolv1.InputType_INPUT_TYPE_QUERY)
	_, d := embed(instructed, embedpoolv1.InputType_INPUT_TYPE_DOCUMENT)
	if cosine(q, d) > 0.999 {
		t.Fatalf("query and document vectors are the same (cosine %f)", cosine(q, d))
	}
	// A preference for a backend, with no exact variant named.
	resp, _ = embed(&embedpoolv1.ModelSelector{Model: model, Backend: embedpoolv1.Backend_BACKEND_OPENVINO}, embedpoolv1.InputType_INPUT_TYPE_DOCUMENT)
	if resp.Variant != "openvino-cpu" {
		t.Fatalf("backend OPENVINO chose %q", resp.Variant)
	}
}

func TestSimilarityRanksTheRedPlanet(t *testing.T) {
	resp, err := pool(t).Similarity(ctx(t), &embedpoolv1.SimilarityRequest{
		Model: &embedpoolv1.ModelSelector{Model: model}, Queries: []string{query}, Documents: planets, TopK: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Rows) != 1 || len(resp.Rows[0].Ranked) != 1 || resp.Rows[0].Ranked[0].Index != 1 {
		t.Fatalf("Similarity: %v", resp.Rows)
	}
}

func TestEmbedStreamManyInFlightOneBad(t *testing.T) {
	stream, err := pool(t).EmbedStream(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"a", "b", "bad", "c", "d"}
	for _, id := range ids { // all written before any answer is read: several in flight
		req := &embedpoolv1.EmbedRequest{Inputs: []string{"stream text " + id}}
		if id == "bad" {
			req = &embedpoolv1.EmbedRequest{Inputs: []string{"x"}, Dimensions: 100000}
		}
		if err := stream.Send(&embedpoolv1.EmbedStreamRequest{RequestId: id, Request: req}); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	answered := map[string]*embedpoolv1.EmbedStreamResponse{}
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the stream ended with %v; one bad request must end only itself", err)
		}
		answered[r.RequestId] = r
	}
	if len(answered) != len(ids) {
		t.Fatalf("answers for %d of %d requests", len(answered), len(ids))
	}
	for _, id := range ids {
		r := answered[id]
		if id == "bad" {
			e := r.GetError()
			if e == nil || codes.Code(e.Code) != codes.InvalidArgument || !strings.Contains(e.Message, "dimensions") {
				t.Fatalf("the bad request's answer: %v", r)
			}
		} else if r.GetResponse() == nil || len(r.GetResponse().Embeddings[0].Values) != 384 {
			t.Fatalf("request %s: %v", id, r)
		}
	}
}

func TestADeadlineThatExpires(t *testing.T) {
	// The recording model sleeps 3 s on this text; the call allows 0.5 s.
	c, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := pool(t).Embed(c, &embedpoolv1.EmbedRequest{
		Model: &embedpoolv1.ModelSelector{Model: "recording-test"}, Inputs: []string{"sleep:3"},
	})
	wantCode(t, err, codes.DeadlineExceeded, "")
}

func TestAnUnknownModelIsNotFound(t *testing.T) {
	_, err := pool(t).Embed(ctx(t), &embedpoolv1.EmbedRequest{
		Model: &embedpoolv1.ModelSelector{Model: "no-such-model"}, Inputs: []string{"x"},
	})
	wantCode(t, err, codes.NotFound, "no-such-model")
}

func TestTheBearerToken(t *testing.T) {
	c := embedpoolv1.NewEmbeddingServiceClient(dial(t, "EMBEDPOOL_AUTH_TARGET"))
	req := &embedpoolv1.EmbedRequest{Inputs: []string{"authenticated"}}
	_, err := c.Embed(ctx(t), req)
	wantCode(t, err, codes.Unauthenticated, "authorization")
	bad := metadata.AppendToOutgoingContext(ctx(t), "authorization", "Bearer wrong")
	_, err = c.Embed(bad, req)
	wantCode(t, err, codes.Unauthenticated, "not valid")
	good := metadata.AppendToOutgoingContext(ctx(t), "authorization", "Bearer "+os.Getenv("EMBEDPOOL_AUTH_TOKEN"))
	resp, err := c.Embed(good, req)
	if err != nil || len(resp.Embeddings) != 1 {
		t.Fatalf("with the token: %v", err)
	}
}

func TestBytesVectorsEqualThePythonClients(t *testing.T) {
	raw, err := os.ReadFile(os.Getenv("EMBEDPOOL_EXPECTED"))
	if err != nil {
		t.Fatal(err)
	}
	var expected struct {
		Texts   []string    `json:"texts"`
		Vectors [][]float32 `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &expected); err != nil {
		t.Fatal(err)
	}
	resp, err := pool(t).Embed(ctx(t), &embedpoolv1.EmbedRequest{
		Model: &embedpoolv1.ModelSelector{Model: model}, Inputs: expected.Texts,
		Encoding: embedpoolv1.VectorEncoding_VECTOR_ENCODING_BYTES,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range resp.Embeddings {
		if len(e.Values) != 0 {
			t.Fatalf("BYTES encoding filled values")
		}
		if c := cosine(decode(t, e, resp.Dimensions), expected.Vectors[i]); c < 0.9999 {
			t.Fatalf("text %d: cosine %f to the Python client's vector", i, c)
		}
	}
}
