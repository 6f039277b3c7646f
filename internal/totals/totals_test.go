package totals

import (
	"math/rand/v2"
	"testing"
)

// The same terms in any order give the same total, to the last bit.
func TestFsumIsOrderIndependent(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	terms := make([]float64, 2000)
	for i := range terms {
		terms[i] = (rng.Float64() - 0.5) * float64(uint64(1)<<rng.IntN(60))
	}
	var want Exact
	for _, x := range terms {
		want.Add(x)
	}
	for range 20 {
		rng.Shuffle(len(terms), func(i, j int) { terms[i], terms[j] = terms[j], terms[i] })
		var got Exact
		for _, x := range terms {
			got.Add(x)
		}
		if got.Value() != want.Value() {
			t.Fatalf("order changed the sum: %v vs %v", got.Value(), want.Value())
		}
	}
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"empty", nil, 0},
		{"cancelling", []float64{1e20, 1, -1e20}, 1},
		{"tenths", []float64{0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}, 1},
		{"fine-tune and its retraction", []float64{2.855e15, 7.3e17, -2.855e15}, 7.3e17},
	}
	for _, tt := range tests {
		var f Exact
		for _, x := range tt.in {
			f.Add(x)
		}
		if f.Value() != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, f.Value(), tt.want)
		}
	}
}
