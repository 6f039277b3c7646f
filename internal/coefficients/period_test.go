package coefficients_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
)

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

// undated is the default document without its periods (and without the sources of those).
func undated(t *testing.T) string {
	t.Helper()
	doc := string(coefficients.DefaultYAML())
	start, end := strings.Index(doc, "\nperiods:\n"), strings.Index(doc, "\nsources:\n")
	if start < 0 || end < start {
		t.Fatal("default.yaml: no periods section before sources")
	}
	return doc[:start] + "\n"
}

// The default set replays with the fleet of its time: each period is laid over the one before.
func TestDefaultFleetByDate(t *testing.T) {
	t.Parallel()
	d := coefficients.Default()
	if !d.Dated() {
		t.Fatal("the default set has no periods")
	}
	tests := []struct {
		at     time.Time
		region string
		want   coefficients.Mix
	}{
		{date(2022, 12, 1), "world", coefficients.Mix{"a100": 1}},
		{date(2023, 1, 1), "world", coefficients.Mix{"a100": .55, "h100": .45}},
		{date(2023, 2, 1), "cn", coefficients.Mix{"a100": .4, "a800": .6}},
		{date(2023, 6, 1), "cn", coefficients.Mix{"a800": .6, "h800": .4}},
		// 2024-11-01 changes only the default fleet: China keeps 2024-04-01's.
		{date(2024, 12, 1), "cn", coefficients.Mix{"h20": .35, "h800": .3, "ascend-910b": .2, "a800": .15}},
		{date(2024, 12, 1), "us", coefficients.Mix{"h100": .6, "a100": .25, "h200": .1, "b200": .05}},
		{date(2025, 2, 27), "cn-deepseek", coefficients.Mix{"h800": 1}},
		{date(2026, 3, 1), "world", coefficients.Mix{"gb200": .2, "gb300": .25, "b200": .1, "b300": .15, "h100": .15, "h200": .15}},
	}
	for _, tc := range tests {
		got := d.At(tc.at).Infrastructure.Fleet.For(tc.region)
		if len(got) != len(tc.want) {
			t.Errorf("%s %s: fleet %v, want %v", tc.at.Format(time.DateOnly), tc.region, got, tc.want)
			continue
		}
		for a, s := range tc.want {
			if got[a] != s {
				t.Errorf("%s %s: fleet %v, want %v", tc.at.Format(time.DateOnly), tc.region, got, tc.want)
				break
			}
		}
	}
	if d.At(date(2019, 1, 1)) != d.Set {
		t.Error("before the first period the undated values apply")
	}
}

// number is a decoded YAML number as a float64.
func number(v any) float64 {
	switch n := v.(type) {
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case uint64:
		return float64(n)
	case float64:
		return n
	}
	return math.NaN()
}

// Grid intensity is dated by year for every region the audit names and the ones the history
// uses: in force on 1 July of each year is the figure that year's period sets (2022: the undated
// one), so consecutive years differ wherever the source's figures do.
func TestDefaultGridIntensityByYear(t *testing.T) {
	t.Parallel()
	d := coefficients.Default()
	set := func(from string) map[string]any {
		for _, p := range d.Set.Periods {
			if p.From == from {
				e, _ := p.Values["energy"].(map[string]any)
				g, _ := e["grid_intensity_g_per_kwh"].(map[string]any)
				return g
			}
		}
		t.Fatalf("no period from %s", from)
		return nil
	}
	years := map[int]string{2023: "2023-01-01", 2024: "2024-01-01", 2025: "2025-01-01"}
	for _, region := range []string{"default", "us", "cn", "cn-deepseek", "in", "fr", "gb", "dk", "jp", "kr", "sa", "ae"} {
		prev := 0.0
		for y := 2022; y <= 2025; y++ {
			g := d.At(date(y, 7, 1)).Energy.GridIntensityGPerKWh
			got := g.Default
			if region != "default" {
				v, ok := g.Regions[region]
				if !ok {
					t.Errorf("%d: %s has no grid intensity of its own", y, region)
					continue
				}
				got = v
			}
			if from, ok := years[y]; ok {
				vals := set(from)
				var want any = vals["default"]
				if region != "default" {
					r, _ := vals["regions"].(map[string]any)
					want = r[region]
				}
				if want == nil {
					if got != prev {
						t.Errorf("%d %s: %v, want %v kept from the year before (the period sets none)", y, region, got, prev)
					}
				} else if w := number(want); got != w {
					t.Errorf("%d %s: %v in force, the %s period sets %v", y, region, got, from, want)
				}
			}
			if y == 2023 && got == prev {
				t.Errorf("%s: 2023 repeats 2022's %v: not dated", region, got)
			}
			prev = got
		}
	}
}

// No accelerator appears in a fleet of the default set before its availability date.
func TestDefaultFleetRespectsAvailability(t *testing.T) {
	t.Parallel()
	d := coefficients.Default()
	accs := d.Set.Chips.Accelerators
	for _, p := range d.Set.Periods {
		from, err := time.Parse(coefficients.DateLayout, p.From)
		if err != nil {
			t.Fatal(err)
		}
		set := d.At(from)
		mixes := map[string]coefficients.Mix{"default": set.Infrastructure.Fleet.Default}
		for r, m := range set.Infrastructure.Fleet.Regions {
			mixes[r] = m
		}
		for r, m := range mixes {
			for a, share := range m {
				avail, err := time.Parse(coefficients.DateLayout, accs[a].AvailableFrom)
				if err != nil {
					t.Errorf("accelerator %s has no available_from date: %v", a, err)
					continue
				}
				if share > 0 && from.Before(avail) {
					t.Errorf("period %s, fleet %s: %s (available %s) before its availability", p.From, r, a, accs[a].AvailableFrom)
				}
			}
		}
	}
}

func TestPeriodsRefused(t *testing.T) {
	t.Parallel()
	base := undated(t)
	tests := []struct {
		name, periods, want string
	}{
		{"unsorted", `
  - {from: 2024-01-01, energy: {load_factor: 0.6}}
  - {from: 2023-01-01, energy: {load_factor: 0.5}}`, "periods.2023-01-01.from: periods must be sorted by from"},
		{"same day twice", `
  - {from: 2024-01-01, energy: {load_factor: 0.6}}
  - {from: 2024-01-01, energy: {load_factor: 0.5}}`, "periods.2024-01-01.from: periods must be sorted by from"},
		{"overlapping", `
  - {from: 2023-01-01, until: 2024-06-01, energy: {load_factor: 0.6}}
  - {from: 2024-01-01, energy: {load_factor: 0.5}}`, "periods.2024-01-01.from: overlaps the period before, which runs until 2024-06-01"},
		{"until before from", `
  - {from: 2023-01-01, until: 2022-01-01, energy: {load_factor: 0.6}}`, "periods.2023-01-01.until: must be a date YYYY-MM-DD after from"},
		{"accelerator before its availability", `
  - {from: 2023-06-01, infrastructure: {fleet: {default: {h100: 0.5, b200: 0.5}}}}`,
			"periods.2023-06-01.infrastructure.fleet.default.b200: accelerator b200 is available from 2024-11-01, after the fleet comes into force on 2023-06-01"},
		{"region fleet before availability", `
  - {from: 2023-01-01, infrastructure: {fleet: {regions: {cn: {h800: 1}}}}}`,
			"periods.2023-01-01.infrastructure.fleet.regions.cn.h800: accelerator h800 is available from 2023-03-21"},
		{"inherited mix before availability", `
  - {from: 2025-01-01, infrastructure: {fleet: {regions: {us: {b200: 1}}}}}
  - {from: 2025-02-01, energy: {load_factor: 0.6}}`, ""},
		{"undated fleet again after until", `
  - {from: 2021-01-01, until: 2021-06-01, energy: {load_factor: 0.6}}`, ""},
		{"misspelt key in a period", `
  - {from: 2024-01-01, energy: {load_factr: 0.6}}`, "periods.2024-01-01.energy.load_factr: unknown key"},
		{"rule broken in a period", `
  - {from: 2024-01-01, infrastructure: {fleet: {default: {h100: 0.5}}}}`, "periods.2024-01-01.infrastructure.fleet.default: shares must sum to 1 (got 0.5)"},
		{"not a date", `
  - {from: "2024-1-1", energy: {load_factor: 0.6}}`, "periods.0.from: must match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := coefficients.Parse([]byte(base + "periods:" + tc.periods + "\n"))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ve *event.ValidationError
			if err == nil || !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a ValidationError holding %q", err, tc.want)
			}
		})
	}
}

// A fleet whose accelerators are fine when the undated values resume is accepted; one whose
// undated fleet names an accelerator not yet available when it resumes is refused.
func TestPeriodUntilResumesUndated(t *testing.T) {
	t.Parallel()
	doc := strings.Replace(undated(t), "    default: {a100: 1.0}\n", "    default: {b200: 1.0}\n", 1) + `periods:
  - {from: 2020-06-01, until: 2021-01-01, infrastructure: {fleet: {default: {a100: 1}}}}
`
	_, err := coefficients.Parse([]byte(doc))
	if err == nil || !strings.Contains(err.Error(), "infrastructure.fleet.default.b200: accelerator b200 is available from 2024-11-01, after the fleet is in force again from 2021-01-01") {
		t.Fatalf("got %v", err)
	}
	ok := strings.Replace(doc, "until: 2021-01-01", "until: 2025-01-01", 1)
	l, err := coefficients.Parse([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if got := l.At(date(2022, 1, 1)).Infrastructure.Fleet.Default; got["a100"] != 1 {
		t.Errorf("in the period: %v", got)
	}
	if got := l.At(date(2025, 1, 1)).Infrastructure.Fleet.Default; got["b200"] != 1 || l.At(date(2025, 1, 1)) != l.Set {
		t.Errorf("after until: %v, want the undated set", got)
	}
}

// An undated region mix is in force in every period that does not replace it, so it must be
// available when the first period begins; the error says the mix was inherited.
func TestInheritedMixChecked(t *testing.T) {
	t.Parallel()
	doc := strings.Replace(undated(t), "      cn: {a100: 1.0}\n", "      cn: {a100: 1.0}\n      us: {b200: 1.0}\n", 1) + `periods:
  - {from: 2023-01-01, energy: {load_factor: 0.6}}
`
	_, err := coefficients.Parse([]byte(doc))
	if err == nil || !strings.Contains(err.Error(), "periods.2023-01-01.infrastructure.fleet.regions.us.b200: accelerator b200 is available from 2024-11-01") ||
		!strings.Contains(err.Error(), "inherited") {
		t.Fatalf("got %v", err)
	}
}

// A file without dates keeps working as before: no periods in its canonical form, the same set
// at every time; and a dated file's periods survive the canonical round trip.
func TestUndatedAndCanonical(t *testing.T) {
	t.Parallel()
	l, err := coefficients.Parse([]byte(undated(t)))
	if err != nil {
		t.Fatal(err)
	}
	if l.Dated() || l.At(date(2030, 1, 1)) != l.Set {
		t.Error("an undated set depends on the time")
	}
	if strings.Contains(string(l.Canonical), `"periods"`) {
		t.Error("the canonical form of an undated set names periods")
	}
	d := coefficients.Default()
	again, err := coefficients.Parse(d.Canonical)
	if err != nil {
		t.Fatal(err)
	}
	if again.CoefVersion != d.CoefVersion {
		t.Errorf("canonical round trip: %s, want %s", again.CoefVersion, d.CoefVersion)
	}
	at := date(2025, 3, 1)
	if got, want := again.At(at).Infrastructure.Fleet.Default, d.At(at).Infrastructure.Fleet.Default; len(got) != len(want) || got["gb200"] != want["gb200"] {
		t.Errorf("round trip fleet %v, want %v", got, want)
	}
	// Omitting `regions:` and writing `regions: {}` give the same canonical document.
	empty := strings.Replace(undated(t), "    regions: {gb: 1.3, dk: 1.3, jp: 1.4, kr: 1.4, in: 1.5, sa: 1.5, ae: 1.5}\n", "    regions: {}\n", 1)
	omitted := strings.Replace(empty, "    default: 1.2\n    regions: {}\n", "    default: 1.2\n", 1)
	a, errA := coefficients.Parse([]byte(empty))
	b, errB := coefficients.Parse([]byte(omitted))
	if errA != nil || errB != nil || empty == omitted || a.CoefVersion != b.CoefVersion {
		t.Errorf("regions omitted vs empty: %v %v, %v vs %v", errA, errB, a, b)
	}
}

func TestAtAllocatesNothing(t *testing.T) {
	d := coefficients.Default()
	at := date(2025, 3, 1)
	if n := testing.AllocsPerRun(100, func() { _ = d.At(at) }); n != 0 {
		t.Errorf("At allocates %v times", n)
	}
}
