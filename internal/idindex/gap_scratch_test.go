package idindex

import (
	"os"
	"strconv"
)

func init() {
	if g := os.Getenv("IDX_GAP"); g != "" {
		n, _ := strconv.Atoi(g)
		flushGap = uint64(n)
	}
}
