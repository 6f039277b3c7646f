package totals

import "math"

// Exact adds float64s exactly (Shewchuk's algorithm, as Python's math.fsum): it keeps
// non-overlapping partial sums, so the rounded total does not depend on the order of the
// terms. Events reach a sum in an order that varies between brokers and runs; the totals of
// the same events must not.
type Exact struct{ partials []float64 }

// Partials are the non-overlapping partial sums whose exact sum is the total: a sum kept on
// disk is its partials, and Merge of them into another sum is exact too.
func (f *Exact) Partials() []float64 { return f.partials }

// Merge adds exactly what o holds.
func (f *Exact) Merge(partials []float64) {
	for _, x := range partials {
		f.Add(x)
	}
}

// Add adds x.
func (f *Exact) Add(x float64) {
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

// Value is the correctly rounded sum of everything added.
func (f *Exact) Value() float64 {
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
