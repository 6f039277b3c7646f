package natsjs

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/layercake/cascade/internal/netaddr"
)

// EmbeddedMaxMemory bounds what the embedded server's memory-storage streams may hold.
const EmbeddedMaxMemory = 64 << 20

// ServerOptions configure the embedded nats-server.
type ServerOptions struct {
	DataDir  string // JetStream file store; required
	Listen   string // host:port; default 127.0.0.1:4222; port -1 picks a free one
	User     string // client auth: user and password (both or neither), or a token
	Password string
	Token    string
	// ConfigFile is a nats-server configuration file whose authorization and accounts
	// sections (users, passwords, tokens, nkeys, per-account JetStream) replace User, Password
	// and Token; nothing else of it is used.
	ConfigFile string
	// MaxPayload bounds one message; default 1 MiB, the server's own default.
	MaxPayload int32
	// Name is the server's name, unique within a cluster; default "cascade".
	Name string
	// Cluster, if its Name is set, makes the server a node of a JetStream cluster.
	Cluster ClusterOptions
	// StartTimeout bounds the wait for the server to accept clients (a clustered node does
	// once it sees its routes); default 10s.
	StartTimeout time.Duration
}

// ClusterOptions make an embedded server one node of a JetStream cluster on loopback (for
// trying a cluster and for tests; a cluster across machines runs nats-server itself).
type ClusterOptions struct {
	Name   string   // cluster name, the same on every node
	Listen string   // host:port of this node's route listener, on loopback; port -1 picks one
	Routes []string // route URLs of every node (nats://host:port); this node's own is ignored
}

// StartServer starts an embedded nats-server with JetStream and waits until it accepts
// clients. A user without a password (or a password without a user) or a blank token is
// refused; so is a non-loopback address without a complete credential: anyone on the network
// could publish signals or read feeds. A busy address is reported at once.
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
	if o.Name == "" {
		o.Name = "cascade"
	}
	opts := &server.Options{
		ServerName: o.Name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.DataDir,
		MaxPayload: o.MaxPayload,
		NoSigs:     true,
		NoLog:      true,
		// cascade's streams and registry are file-stored; memory storage is capped so that a
		// stream created in memory on this server cannot take three quarters of the
		// machine's RAM (the server's default) from the process's memory limit.
		JetStreamMaxMemory: EmbeddedMaxMemory,
	}
	if err := o.Cluster.apply(opts); err != nil {
		return nil, err
	}
	secured, err := o.auth(opts)
	if err != nil {
		return nil, err
	}
	if !netaddr.IsLoopback(host) && !secured {
		return nil, fmt.Errorf("%w: --nats-listen %s is reachable from other machines; set --nats-user with --nats-password, --nats-token or --nats-server-config, or listen on 127.0.0.1", ErrInvalidOption, o.Listen)
	}
	if port > 0 {
		// nats-server reports a busy port only by never becoming ready.
		l, err := net.Listen("tcp", net.JoinHostPort(host, portStr))
		if err != nil {
			return nil, fmt.Errorf("--nats-listen %s: %w", o.Listen, err)
		}
		_ = l.Close()
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	go ns.Start()
	wait := o.StartTimeout
	if wait <= 0 {
		wait = 10 * time.Second
	}
	if !ns.ReadyForConnections(wait) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats-server on %s did not start within %s (is the port in use?)", o.Listen, wait)
	}
	return ns, nil
}

// apply sets the cluster options on opts; a route listener off loopback is refused, since
// the routes carry no authentication here.
func (c ClusterOptions) apply(opts *server.Options) error {
	if c.Name == "" {
		if c.Listen != "" || len(c.Routes) > 0 {
			return fmt.Errorf("%w: cluster listen and routes need a cluster name", ErrInvalidOption)
		}
		return nil
	}
	host, portStr, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("%w: cluster listen %q: %w", ErrInvalidOption, c.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("%w: cluster listen port %q: %w", ErrInvalidOption, portStr, err)
	}
	if !netaddr.IsLoopback(host) {
		return fmt.Errorf("%w: cluster listen %s is not on loopback; an embedded cluster is for one machine (run nats-server for more)", ErrInvalidOption, c.Listen)
	}
	routes := make([]*url.URL, 0, len(c.Routes))
	for _, r := range c.Routes {
		u, err := url.Parse(strings.TrimSpace(r))
		if err != nil || u.Port() == "" {
			return fmt.Errorf("%w: cluster route %q: want nats://host:port", ErrInvalidOption, r)
		}
		routes = append(routes, u)
	}
	opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port}
	opts.Routes = routes
	return nil
}

// auth sets the server's client authentication on opts and reports whether every client must
// present a credential.
func (o ServerOptions) auth(opts *server.Options) (bool, error) {
	if o.ConfigFile != "" {
		file, err := server.ProcessConfigFile(o.ConfigFile)
		if err != nil {
			return false, fmt.Errorf("%w: --nats-server-config: %w", ErrInvalidOption, err)
		}
		opts.Username, opts.Password, opts.Authorization = file.Username, file.Password, file.Authorization
		opts.Users, opts.Nkeys, opts.Accounts, opts.AuthTimeout = file.Users, file.Nkeys, file.Accounts, file.AuthTimeout
		if file.NoAuthUser != "" {
			return false, fmt.Errorf("%w: --nats-server-config %s: no_auth_user lets clients in without a credential; remove it", ErrInvalidOption, o.ConfigFile)
		}
		// Every user needs a password: a user without one is a door without a lock.
		if opts.Username != "" && strings.TrimSpace(opts.Password) == "" {
			return false, fmt.Errorf("%w: --nats-server-config %s: user %q has no password", ErrInvalidOption, o.ConfigFile, opts.Username)
		}
		for _, u := range opts.Users {
			if strings.TrimSpace(u.Password) == "" {
				return false, fmt.Errorf("%w: --nats-server-config %s: user %q has no password", ErrInvalidOption, o.ConfigFile, u.Username)
			}
		}
		if opts.Authorization != "" && strings.TrimSpace(opts.Authorization) == "" {
			return false, fmt.Errorf("%w: --nats-server-config %s: the token is blank", ErrInvalidOption, o.ConfigFile)
		}
		if opts.Username == "" && opts.Authorization == "" && len(opts.Users) == 0 && len(opts.Nkeys) == 0 {
			return false, fmt.Errorf("%w: --nats-server-config %s holds no authorization (users, token or nkeys)", ErrInvalidOption, o.ConfigFile)
		}
		return true, nil
	}
	switch {
	case o.User != "" && o.Password == "":
		return false, fmt.Errorf("%w: --nats-user %q without --nats-password", ErrInvalidOption, o.User)
	case o.User == "" && o.Password != "":
		return false, fmt.Errorf("%w: --nats-password without --nats-user", ErrInvalidOption)
	case o.Token != "" && strings.TrimSpace(o.Token) == "":
		return false, fmt.Errorf("%w: --nats-token is blank", ErrInvalidOption)
	case strings.TrimSpace(o.User) == "" && o.User != "", o.Password != "" && strings.TrimSpace(o.Password) == "":
		return false, fmt.Errorf("%w: --nats-user and --nats-password must not be blank", ErrInvalidOption)
	}
	opts.Username, opts.Password, opts.Authorization = o.User, o.Password, o.Token
	return o.User != "" || o.Token != "", nil
}
