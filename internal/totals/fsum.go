package totals

import "math"

// fsum adds float64s exactly (Shewchuk's algorithm, as Python's math.fsum): it keeps
// non-overlapping partial sums, so the rounded total does not depend on the order of the
// terms. Events reach a sum in an order that varies between brokers and runs; the totals of
// the same events must not.
type fsum struct{ partials []float64 }

func (f *fsum) add(x float64) {
	i := 0
	for _, y := range f.partials {
		if math.Abs(x) < math.Abs(y) {
			x, y = y, x
		}
		hi := x + y
		lo := y - (hi - x)
		if lo != 0 {
			f.partials[i] = lo
			i++
		}
		x = hi
	}
	f.partials = append(f.partials[:i], x)
}

// value is the correctly rounded sum of everything added.
func (f *fsum) value() float64 {
	n := len(f.partials)
	if n == 0 {
		return 0
	}
	hi := f.partials[n-1]
	lo := 0.0
	for n--; n > 0; n-- {
		x, y := hi, f.partials[n-1]
		hi = x + y
		lo = y - (hi - x)
		if lo != 0 {
			break
		}
	}
	// Round half-even across the remaining partials, as math.fsum does.
	if n > 1 && ((lo < 0 && f.partials[n-2] < 0) || (lo > 0 && f.partials[n-2] > 0)) {
		y := lo * 2
		x := hi + y
		if y == x-hi {
			hi = x
		}
	}
	return hi
}
