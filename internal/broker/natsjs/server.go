package natsjs

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/layercake/cascade/internal/netaddr"
)

// ServerOptions configure the embedded nats-server.
type ServerOptions struct {
	DataDir  string // JetStream file store; required
	Listen   string // host:port; default 127.0.0.1:4222; port -1 picks a free one
	User     string // client auth: user and password, or a token
	Password string
	Token    string
	// MaxPayload bounds one message; default 1 MiB, the server's own default.
	MaxPayload int32
}

// StartServer starts an embedded nats-server with JetStream and waits until it accepts
// clients. A non-loopback address without auth is refused: anyone on the network could
// publish signals or read feeds.
func StartServer(o ServerOptions) (*server.Server, error) {
	if o.DataDir == "" {
		return nil, fmt.Errorf("%w: embedded server needs a data dir", ErrInvalidOption)
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:4222"
	}
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("%w: --nats-listen %q: %w", ErrInvalidOption, o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("%w: --nats-listen port %q: %w", ErrInvalidOption, portStr, err)
	}
	if !netaddr.IsLoopback(host) && o.Token == "" && o.User == "" {
		return nil, fmt.Errorf("%w: --nats-listen %s is reachable from other machines; set --nats-token or --nats-user/--nats-password, or listen on 127.0.0.1", ErrInvalidOption, o.Listen)
	}
	opts := &server.Options{
		ServerName:    "cascade",
		Host:          host,
		Port:          port,
		JetStream:     true,
		StoreDir:      o.DataDir,
		Username:      o.User,
		Password:      o.Password,
		Authorization: o.Token,
		MaxPayload:    o.MaxPayload,
		NoSigs:        true,
		NoLog:         true,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats-server on %s did not start within 10s (is the port in use?)", o.Listen)
	}
	return ns, nil
}
