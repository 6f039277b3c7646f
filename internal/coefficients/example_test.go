package coefficients_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/layercake/cascade/internal/coefficients"
)

func ExampleDefault() {
	d := coefficients.Default()
	version, hash, _ := strings.Cut(d.CoefVersion, "+")
	fmt.Println(version, len(hash), "hex digits")
	fmt.Println(d.Set.Infrastructure.Fleet.For("cn"), d.Set.Infrastructure.PUE.For("us"))
	// The values in force at a time: the fleet of 2024 in China.
	fmt.Println(d.At(time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)).Infrastructure.Fleet.For("cn"))
	// Output:
	// default-2026.12 8 hex digits
	// map[a100:1] 1.2
	// map[a800:0.15 ascend-910b:0.2 h20:0.35 h800:0.3]
}

func ExampleParse() {
	doc := strings.Replace(string(coefficients.DefaultYAML()), "load_factor: 0.7", "load_factr: 0.7", 1)
	_, err := coefficients.Parse([]byte(doc))
	fmt.Println(err)
	// Output:
	// coefficients: energy.load_factr: unknown key
}
