package natsjs_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/layercake/cascade/internal/broker/natsjs"
	"github.com/layercake/cascade/internal/conformance"
)

// A broker listening off loopback lets in only clients with its credential, whether given as
// user and password, a token or a nats-server config file; clients that have it get JetStream.
func TestEmbeddedServerOffLoopbackRequiresTheCredential(t *testing.T) {
	t.Parallel()
	conf := func(body string) string {
		p := filepath.Join(t.TempDir(), "nats.conf")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name string
		o    natsjs.ServerOptions
		good []nats.Option
	}{
		{"user and password", natsjs.ServerOptions{User: "u", Password: "p"}, []nats.Option{nats.UserInfo("u", "p")}},
		{"token", natsjs.ServerOptions{Token: "tok"}, []nats.Option{nats.Token("tok")}},
		{"config users", natsjs.ServerOptions{ConfigFile: conf(`authorization { users: [ {user: a, password: pa}, {user: b, password: pb} ] }`)}, []nats.Option{nats.UserInfo("b", "pb")}},
		{"config accounts", natsjs.ServerOptions{ConfigFile: conf(`accounts { APP: { jetstream: enabled, users: [ {user: a, password: pa} ] } }`)}, []nats.Option{nats.UserInfo("a", "pa")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.o.DataDir, c.o.Listen = t.TempDir(), "0.0.0.0:-1"
			ns, err := natsjs.StartServer(c.o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(ns.Shutdown)
			url := strings.Replace(ns.ClientURL(), "0.0.0.0", "127.0.0.1", 1)
			for _, bad := range [][]nats.Option{nil, {nats.UserInfo("u", "")}, {nats.UserInfo("a", "wrong")}} {
				if nc, err := nats.Connect(url, bad...); !errors.Is(err, nats.ErrAuthorization) {
					if nc != nil {
						nc.Close()
					}
					t.Fatalf("a client without the credential: %v, want an authorization error", err)
				}
			}
			js := conformance.JetStream(t, url, c.good...)
			if _, err := js.AccountInfo(t.Context()); err != nil {
				t.Fatalf("JetStream for the authorized client: %v", err)
			}
		})
	}
}

// Incomplete credentials are refused on any address, naming the flag.
func TestEmbeddedServerRefusesIncompleteCredentials(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		o    natsjs.ServerOptions
		want string
	}{
		{natsjs.ServerOptions{Listen: "127.0.0.1:-1", User: "u"}, "--nats-password"},
		{natsjs.ServerOptions{Listen: "127.0.0.1:-1", Password: "p"}, "--nats-user"},
		{natsjs.ServerOptions{Listen: "0.0.0.0:-1", Token: " "}, "--nats-token"},
		{natsjs.ServerOptions{Listen: "0.0.0.0:-1"}, "--nats-listen"},
		{natsjs.ServerOptions{Listen: "0.0.0.0:-1", ConfigFile: "no-such.conf"}, "--nats-server-config"},
		// A config file is its text here, written to a file by the loop.
		{natsjs.ServerOptions{Listen: "0.0.0.0:-1", ConfigFile: "authorization { users = [{user: a}, {user: c, password: d}] }"}, `user "a" has no password`},
		{natsjs.ServerOptions{Listen: "0.0.0.0:-1", ConfigFile: "accounts { A { users = [{user: x}] } }"}, `user "x" has no password`},
	} {
		if c.o.ConfigFile != "" && c.o.ConfigFile != "no-such.conf" {
			p := filepath.Join(t.TempDir(), "nats.conf")
			if err := os.WriteFile(p, []byte(c.o.ConfigFile), 0o600); err != nil {
				t.Fatal(err)
			}
			c.o.ConfigFile = p
		}
		c.o.DataDir = t.TempDir()
		ns, err := natsjs.StartServer(c.o)
		if err == nil {
			ns.Shutdown()
			t.Fatalf("%+v started", c.o)
		}
		if !errors.Is(err, natsjs.ErrInvalidOption) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an invalid option naming %s", c.o, err, c.want)
		}
	}
}

// The embedded server caps memory storage: a memory stream asking more than
// EmbeddedMaxMemory is refused, a small one is created.
func TestEmbeddedServerCapsMemoryStorage(t *testing.T) {
	t.Parallel()
	ns, err := natsjs.StartServer(natsjs.ServerOptions{DataDir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	if got := ns.JetStreamConfig().MaxMemory; got != natsjs.EmbeddedMaxMemory {
		t.Fatalf("JetStream max memory %d, want %d", got, natsjs.EmbeddedMaxMemory)
	}
	js := conformance.JetStream(t, ns.ClientURL())
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "BIG", Subjects: []string{"big.>"}, Storage: jetstream.MemoryStorage, MaxBytes: 2 * natsjs.EmbeddedMaxMemory}); err == nil {
		t.Fatal("a memory stream over the cap was created")
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "SMALL", Subjects: []string{"small.>"}, Storage: jetstream.MemoryStorage, MaxBytes: 1 << 20}); err != nil {
		t.Fatalf("a 1 MiB memory stream: %v", err)
	}
}
