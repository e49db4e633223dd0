package pooltest

// Debian's grpc-go (1.33) encodes with github.com/golang/protobuf 1.3, which cannot read the
// messages protoc-gen-go 1.28 generates (the protobuf-go API). This codec, registered under
// grpc's own name "proto", uses google.golang.org/protobuf for them and the old library for
// grpc-go's own messages (the health service's). With grpc-go >= 1.35 none of this is needed.

import (
	protov1 "github.com/golang/protobuf/proto"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
)

type codec struct{}

func (codec) Marshal(v interface{}) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		return proto.Marshal(m)
	}
	return protov1.Marshal(v.(protov1.Message))
}

func (codec) Unmarshal(data []byte, v interface{}) error {
	if m, ok := v.(proto.Message); ok {
		return proto.Unmarshal(data, m)
	}
	return protov1.Unmarshal(data, v.(protov1.Message))
}

func (codec) Name() string { return "proto" }

func init() { encoding.RegisterCodec(codec{}) }
