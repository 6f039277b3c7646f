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
//   - an existing target keeps the storage settings its owner recorded; existing, when not
//     nil, is first given its binding and may refuse it with an error, which BindTarget
//     returns before touching the broker; with coef it must already have coef (else an error
//     matching broker.ErrConflict), without it is used as it is and BindTarget returns nil;
//   - a new target is created with cfg and bound to coef, else to the coefficients of
//     scenario base, else the embedded defaults (consumers.BindScenario).
func BindTarget(ctx context.Context, b broker.Broker, into string, coef *coefficients.Loaded, cfg broker.ScenarioConfig, existing func(broker.Binding) error) (*coefficients.Loaded, error) {
	have, err := b.Registry().Get(ctx, into)
	switch {
	case err == nil:
		if existing != nil {
			if err := existing(have); err != nil {
				return nil, err
			}
		}
		if coef != nil && coef.CoefVersion != have.CoefVersion {
			return nil, fmt.Errorf("%w: scenario %s is bound to coefficients %s, not %s", broker.ErrConflict, into, have.CoefVersion, coef.CoefVersion)
		}
		return coef, b.EnsureScenario(ctx, have.Scenario, have.Config)
	case !errors.Is(err, broker.ErrNotFound):
		return nil, err
	}
	if coef == nil {
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
