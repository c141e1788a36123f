package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// rawCodec sends and receives bytes as they are: the request is encoded by hand (field 1 of
// exchanger.v1.ExchangeRequest, subject_token) and the response is not parsed, so the
// client's cost is the same whichever server answers.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: %T is not *[]byte", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: %T is not *[]byte", v)
	}
	*b = data
	return nil
}

func (rawCodec) Name() string { return "proto" }

// exchangeRequest is an ExchangeRequest holding only subject_token (field 1, a string).
func exchangeRequest(token string) []byte {
	request := protowire.AppendTag(make([]byte, 0, len(token)+8), 1, protowire.BytesType)
	return protowire.AppendString(request, token)
}

// grpcCaller calls one unary method over one TLS connection (HTTP/2 multiplexes the workers,
// as a gRPC client in a sidecar or CI step does).
func grpcCaller(o options, tlsConfig *tls.Config) (caller, func(), error) {
	conn, err := grpc.NewClient(o.target,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return nil, nil, fmt.Errorf("gRPC client for %s: %w", o.target, err)
	}
	call := func(ctx context.Context, token string) string {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		request, response := exchangeRequest(token), []byte(nil)
		if err := conn.Invoke(ctx, o.method, &request, &response); err != nil {
			return "grpc " + status.Code(err).String()
		}
		return ""
	}
	return call, func() { conn.Close() }, nil
}
