package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/view"
)

func (a *app) subscribeCmd() *cobra.Command {
	var region, since string
	var fromStart, snapshot bool
	var count int
	cmd := &cobra.Command{
		Use:   "subscribe LAYER",
		Short: "Print the demand feed of a layer (" + event.JoinLayers(event.FeedLayers, "or") + ") as NDJSON CloudEvents",
		Example: `  cascade subscribe chips
  cascade subscribe grid --region us --from-start
  cascade subscribe energy --since 1h --count 100
  cascade subscribe grid --snapshot`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := event.ParseLayer(args[0])
			if err != nil || !slices.Contains(event.FeedLayers, l) {
				return usageError("layer %q: feeds are %s", args[0], event.JoinLayers(event.FeedLayers, "and"))
			}
			sel := broker.Selector{Scenario: a.g.scenario, Kinds: []event.Kind{event.KindDemand}, Layers: []event.Layer{l}}
			if region != "" {
				if !event.ValidName(region) {
					return usageError("--region %q must match %s", region, event.NamePattern)
				}
				sel.Regions = []string{region}
			}
			start, err := event.ParseSince(since, timeNow())
			if err != nil {
				return usageError("--since: %w", err)
			}
			if snapshot && (fromStart || since != "") {
				return usageError("--snapshot starts after the snapshot's position; give it without --since and --from-start")
			}
			ctx := cmd.Context()
			b, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			var f broker.Feed
			if snapshot {
				f, err = a.snapshotFeed(ctx, b, l, region)
			} else {
				f, err = b.Feed(ctx, broker.FeedOptions{Selector: sel, Since: start, FromStart: fromStart})
			}
			if err != nil {
				if errors.Is(err, broker.ErrNotFound) {
					return fmt.Errorf("scenario %s has no stream yet: start `cascade run` or publish into it first: %w", a.g.scenario, err)
				}
				return err
			}
			defer f.Close()
			for n := 0; count <= 0 || n < count; n++ {
				d, err := f.Next(ctx)
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				if _, err := fmt.Fprintf(a.Stdout, "%s\n", d.Message().Data); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&region, "region", "", "only this region")
	f.StringVar(&since, "since", "", "start at this broker time: RFC 3339, YYYY-MM-DD or a duration ago (1h)")
	f.BoolVar(&fromStart, "from-start", false, "start at the beginning of the feed")
	f.BoolVar(&snapshot, "snapshot", false, "first print the layer's current totals (one JSON line: rows and the position they are as of), then every event after that position")
	f.IntVar(&count, "count", 0, "stop after N events (0: follow until interrupted)")
	return cmd
}

// snapshotFeed prints layer l's snapshot (view.AskSnapshot) as one JSON line and returns the
// feed that continues it.
func (a *app) snapshotFeed(ctx context.Context, b broker.Broker, l event.Layer, region string) (broker.Feed, error) {
	vb, err := viewBroker(b)
	if err != nil {
		return nil, err
	}
	snap, err := view.AskSnapshot(ctx, vb, view.SnapshotOptions{Scenario: a.g.scenario, Layer: l, Region: region}, func() {
		fmt.Fprintf(a.Stderr, "cascade: no cascade run answers view requests; reading the log into a temporary view\n")
	})
	if err != nil {
		return nil, err
	}
	line, err := json.Marshal(snap)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(a.Stdout, "%s\n", line); err != nil {
		return nil, err
	}
	return view.FeedAfter(ctx, b, a.g.scenario, l, region, snap.Position)
}
