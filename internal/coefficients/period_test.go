package coefficients_test

import (
	"errors"
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
	// Grid intensity by year: the us figure of 2022, then 2023's from the 2023 period on.
	if a, b := d.At(date(2022, 12, 1)).Energy.GridIntensityGPerKWh.For("us"), d.At(date(2025, 1, 1)).Energy.GridIntensityGPerKWh.For("us"); a != 390 || b != 367 {
		t.Errorf("us grid intensity 2022 %v, 2025 %v; want 390 then 367", a, b)
	}
	// Values a period does not touch are the undated ones.
	if got := d.At(date(2025, 6, 1)).Energy.GridIntensityGPerKWh.For("dk"); got != 152 {
		t.Errorf("dk grid intensity in 2025 = %v, want the undated 152", got)
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
