//go:build !race

package idindex

const raceEnabled = false
