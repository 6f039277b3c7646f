package event

// Quantity is one number of a payload with its unit, for people to read.
type Quantity struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Quantities lists a payload's numbers with units, primary quantity first.
func Quantities(p Payload) []Quantity {
	switch p := p.(type) {
	case *Adoption:
		return []Quantity{{"users_delta", p.UsersDelta, "weekly users"}}
	case *Release:
		return []Quantity{{"params_active", p.ParamsActive, "params"}, {"params_total", p.ParamsTotal, "params"}}
	case *DemandModel:
		return []Quantity{{"tokens_per_day", p.TokensPerDay, "tokens/day"}}
	case *DemandInfrastructure:
		return []Quantity{{"flop_per_s", p.FlopPerS, "FLOP/s"}}
	case *DemandChips:
		q := []Quantity{{"units", p.Units, "accelerators"}}
		if p.HBMGB != nil {
			q = append(q, Quantity{"hbm_gb", *p.HBMGB, "GB HBM"})
		}
		return q
	case *DemandEnergy:
		return []Quantity{{"it_mw", p.ITMW, "MW IT"}, {"facility_mw", p.FacilityMW, "MW facility"}}
	case *DemandGrid:
		return []Quantity{{"avg_mw", p.AvgMW, "MW avg"}, {"generation_mw", p.GenerationMW, "MW generation"},
			{"twh_per_year", p.TWhPerYear, "TWh/yr"}, {"co2_t_per_year", p.CO2TPerYear, "tCO2/yr"}}
	}
	return nil
}

// Label names what a payload is about: its app, model, workload or accelerator.
func Label(p Payload) string {
	switch p := p.(type) {
	case *Adoption:
		return p.App + " (" + p.Category + ")"
	case *Release:
		return p.Model
	case *DemandModel:
		return p.Model
	case *DemandInfrastructure:
		return p.Workload
	case *DemandChips:
		return p.Accelerator + " " + p.Workload
	case *DemandEnergy:
		return p.Workload
	case *DemandGrid:
		return p.Workload
	}
	return ""
}
