//go:build !race

package demand_test

const raceEnabled = false
