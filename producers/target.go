package producers

import (
	"context"
	"errors"
	"fmt"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
)

// BindTarget registers scenario into as the target of a replay, of which replay is the owner
// when it creates it, and returns the coefficient set it bound into with:
//   - with coef, into is bound to coef with the storage settings cfg by
//     consumers.BindScenario: a new target is created, an existing one must already have coef
//     (else an error matching broker.ErrConflict);
//   - without, an existing target is used as it is, with the storage settings its owner
//     recorded, and BindTarget returns nil; existing, when not nil, is first given its binding
//     and may refuse it with an error, which BindTarget returns before touching the broker;
//   - without, a new target gets the coefficients of scenario base, else the embedded
//     defaults, and cfg.
func BindTarget(ctx context.Context, b broker.Broker, into string, coef *coefficients.Loaded, cfg broker.ScenarioConfig, existing func(broker.Binding) error) (*coefficients.Loaded, error) {
	if coef == nil {
		have, err := b.Registry().Get(ctx, into)
		switch {
		case err == nil:
			if existing != nil {
				if err := existing(have); err != nil {
					return nil, err
				}
			}
			return nil, b.EnsureScenario(ctx, have.Scenario, have.Config)
		case !errors.Is(err, broker.ErrNotFound):
			return nil, err
		}
		coef = coefficients.Default()
		if base, err := b.Registry().Get(ctx, event.DefaultScenario); err == nil {
			if coef, err = coefficients.Parse(base.Document); err != nil {
				return nil, fmt.Errorf("coefficients of base: %w", err)
			}
		}
	}
	if err := consumers.BindScenario(ctx, b, into, coef, cfg); err != nil {
		return nil, err
	}
	return coef, nil
}
