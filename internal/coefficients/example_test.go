package coefficients_test

import (
	"fmt"
	"strings"

	"github.com/layercake/cascade/internal/coefficients"
)

func ExampleDefault() {
	d := coefficients.Default()
	version, hash, _ := strings.Cut(d.CoefVersion, "+")
	fmt.Println(version, len(hash), "hex digits")
	fmt.Println(d.Set.Infrastructure.Fleet.For("cn"), d.Set.Infrastructure.PUE.For("us"))
	// Output:
	// default-2026.11 8 hex digits
	// map[h800:1] 1.2
}

func ExampleParse() {
	doc := strings.Replace(string(coefficients.DefaultYAML()), "load_factor: 0.7", "load_factr: 0.7", 1)
	_, err := coefficients.Parse([]byte(doc))
	fmt.Println(err)
	// Output:
	// coefficients: energy.load_factr: unknown key
}
