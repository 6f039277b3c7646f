package producers_test

import (
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/producers"
)

func connect(t *testing.T) broker.Broker {
	t.Helper()
	b, _ := conformance.NATS(t)
	return b
}

// halfUtil is the default set with half the inference utilization: another coefficient set.
func halfUtil(t *testing.T) *coefficients.Loaded {
	t.Helper()
	doc := regexp.MustCompile(`(?m)^(\s+utilization:\s*\{?\s*inference:\s*)0\.15`).ReplaceAll(coefficients.DefaultYAML(), []byte("${1}0.075"))
	c, err := coefficients.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	if c.CoefVersion == coefficients.Default().CoefVersion {
		t.Fatal("halfUtil is the default set")
	}
	return c
}

func boundVersion(t *testing.T, b broker.Broker, s string) string {
	t.Helper()
	have, err := b.Registry().Get(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	return have.CoefVersion
}

// A new target gets the given set, else base's, else the defaults, and the given storage
// settings.
func TestBindTargetNewGetsGivenElseBaseElseDefaults(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := connect(t)
	half := halfUtil(t)
	cfg := broker.ScenarioConfig{DedupWindow: 3 * time.Minute}
	if got, err := producers.BindTarget(ctx, b, "plain", nil, cfg, nil); err != nil || got.CoefVersion != coefficients.Default().CoefVersion {
		t.Fatalf("no base, no set: bound %v (%v), want the defaults", got, err)
	}
	if have, _ := b.Registry().Get(ctx, "plain"); have.Config != cfg {
		t.Fatalf("new target's storage %+v, want %+v", have.Config, cfg)
	}
	if got, err := producers.BindTarget(ctx, b, "given", half, cfg, nil); err != nil || got.CoefVersion != half.CoefVersion || boundVersion(t, b, "given") != half.CoefVersion {
		t.Fatalf("given set: bound %v (%v)", got, err)
	}
	if err := consumers.BindScenario(ctx, b, event.DefaultScenario, half, cfg); err != nil {
		t.Fatal(err)
	}
	if got, err := producers.BindTarget(ctx, b, "from-base", nil, cfg, nil); err != nil || got.CoefVersion != half.CoefVersion || boundVersion(t, b, "from-base") != half.CoefVersion {
		t.Fatalf("no set: bound %v (%v), want base's %s", got, err, half.CoefVersion)
	}
}

// An existing target must have the given set (another is a conflict); without one it is used
// as it is, keeping its owner's storage settings, after existing had its say.
func TestBindTargetExistingMustMatchAndKeepsItsStorage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := connect(t)
	half := halfUtil(t)
	owner := broker.ScenarioConfig{DedupWindow: 5 * time.Minute, MaxAge: time.Hour}
	if err := consumers.BindScenario(ctx, b, "t", half, owner); err != nil {
		t.Fatal(err)
	}
	if _, err := producers.BindTarget(ctx, b, "t", coefficients.Default(), broker.ScenarioConfig{}, nil); !errors.Is(err, broker.ErrConflict) {
		t.Fatalf("another set for an existing target: %v, want ErrConflict", err)
	}
	// The same set again, with other storage settings (the flags' defaults): the target keeps
	// its owner's.
	if got, err := producers.BindTarget(ctx, b, "t", half, broker.ScenarioConfig{}, nil); err != nil || got != half {
		t.Fatalf("the same set again: bound %v (%v)", got, err)
	}
	var told []broker.Binding
	got, err := producers.BindTarget(ctx, b, "t", nil, broker.ScenarioConfig{DedupWindow: time.Minute}, func(have broker.Binding) error {
		told = append(told, have)
		return nil
	})
	if err != nil || got != nil || len(told) != 1 || told[0].CoefVersion != half.CoefVersion {
		t.Fatalf("existing target used as it is: bound %v (%v), told %+v", got, err, told)
	}
	if have, _ := b.Registry().Get(ctx, "t"); have.Config != owner || have.CoefVersion != half.CoefVersion {
		t.Fatalf("existing target now has storage %+v and set %s, want its owner's %+v and %s", have.Config, have.CoefVersion, owner, half.CoefVersion)
	}
	refused := errors.New("refused")
	if _, err := producers.BindTarget(ctx, b, "t", nil, broker.ScenarioConfig{}, func(broker.Binding) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("existing refused: %v", err)
	}
}
