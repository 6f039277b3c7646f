package netaddr

import "testing"

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://svc:pw@127.0.0.1:1", "nats://svc:xxxxx@127.0.0.1:1"},
		{"nats://s3cret-token@host:4222", "nats://redacted@host:4222"},
		{"nats://a:p@h1:1,nats://h2:2,tls://b:q@h3:3", "nats://a:xxxxx@h1:1,nats://h2:2,tls://b:xxxxx@h3:3"},
		{"u:p:w@kafka1:9092,kafka2:9092", "u:xxxxx@kafka1:9092,kafka2:9092"},
		{"nats://host:4222/path@x", "nats://host:4222/path@x"},
		{"nats://u:p@ss@host:1", "nats://u:xxxxx@host:1"},
	} {
		if got := Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := RedactIn(`parse "nats://u:pw@h:x": invalid port`, "nats://u:pw@h:x"); got != `parse "nats://u:xxxxx@h:x": invalid port` {
		t.Errorf("RedactIn: %s", got)
	}
}
