//go:build race

package demand_test

// raceEnabled: the race detector drops sync.Pool items at random, so allocation counts are
// not the program's.
const raceEnabled = true
