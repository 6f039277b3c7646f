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
	var want fsum
	for _, x := range terms {
		want.add(x)
	}
	for range 20 {
		rng.Shuffle(len(terms), func(i, j int) { terms[i], terms[j] = terms[j], terms[i] })
		var got fsum
		for _, x := range terms {
			got.add(x)
		}
		if got.value() != want.value() {
			t.Fatalf("order changed the sum: %v vs %v", got.value(), want.value())
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
		var f fsum
		for _, x := range tt.in {
			f.add(x)
		}
		if f.value() != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, f.value(), tt.want)
		}
	}
}
