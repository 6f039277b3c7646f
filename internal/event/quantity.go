package event

// Quantity is one number of a payload with its unit, for people to read.
type Quantity struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Quantities lists a payload's numbers with units, primary quantity first.
func Quantities(p Payload) []Quantity {
	if s, ok := spec(p); ok {
		return s.Quantities(p)
	}
	return nil
}

// Primary is the value of a payload's primary quantity, whose exact zero suppresses a
// derived output; 1 for a payload outside the topology.
func Primary(p Payload) float64 {
	if s, ok := spec(p); ok && s.PrimaryValue != nil {
		return s.PrimaryValue(p)
	}
	if qs := Quantities(p); len(qs) > 0 {
		return qs[0].Value
	}
	return 1
}

// Label names what a payload is about: its app, model, workload or accelerator.
func Label(p Payload) string {
	if s, ok := spec(p); ok {
		return s.Label(p)
	}
	return ""
}

// TotalsKey is the row key totals sums a payload under: the model, the accelerator or the
// workload.
func TotalsKey(p Payload) string {
	if s, ok := spec(p); ok && s.Key != nil {
		return s.Key(p)
	}
	return ""
}
