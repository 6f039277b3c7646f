package tree_test

import (
	"math"
	"testing"

	"github.com/layercake/cascade/internal/tree"
)

// Number writes what the page's num() writes, so the CLI and the page read alike.
func TestNumberMatchesThePage(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		v    float64
		want string
	}{
		{0, "0"},
		{1e-13, "0"},
		{-1e-13, "0"},
		{1e-3, "0.001"},
		{0.00123456, "0.00123"},
		{0.5, "0.5"},
		{3.94e-4, "3.94×10⁻⁴"},
		{-3.94e-4, "-3.94×10⁻⁴"},
		{1, "1"},
		{7, "7"},
		{1.5, "1.50"},
		{12.345, "12.3"},
		{999, "999"},
		{999.4, "999"},
		{999.6, "1.00 k"},
		{1000, "1.00 k"},
		{65_100, "65.1 k"},
		{1.646e8, "165 M"},
		{-1.646e8, "-165 M"},
		{3.083e15, "3.08 P"},
		{-1.2e17, "-120 P"},
		{1e21, "1.00 Z"},
		{-1e21, "-1.00 Z"},
		{1e27, "1.00×10²⁷"},
		{math.NaN(), "—"},
		{math.Inf(1), "—"},
	} {
		if got := tree.Number(c.v); got != c.want {
			t.Errorf("Number(%g) = %q, want %q", c.v, got, c.want)
		}
	}
}

func TestQuantityCarriesTheUnit(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		v          float64
		unit, want string
	}{
		{1.646e8, "tokens/day", "165 M tokens/day"},
		{-2.5e3, "MW avg", "-2.50 k MW avg"},
		{0, "accelerators", "0 accelerators"},
		{1e-3, "TWh/yr", "0.001 TWh/yr"},
		{1e21, "FLOP/s", "1.00 Z FLOP/s"},
		{42, "", "42"},
	} {
		if got := tree.Quantity(c.v, c.unit); got != c.want {
			t.Errorf("Quantity(%g, %q) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
}
