package cli

import (
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

func (a *app) subscribeCmd() *cobra.Command {
	var region, since string
	var fromStart bool
	var count int
	cmd := &cobra.Command{
		Use:   "subscribe LAYER",
		Short: "Print the demand feed of a layer (" + event.JoinLayers(event.FeedLayers, "or") + ") as NDJSON CloudEvents",
		Example: `  cascade subscribe chips
  cascade subscribe grid --region us --from-start
  cascade subscribe energy --since 1h --count 100`,
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
			ctx := cmd.Context()
			b, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			f, err := b.Feed(ctx, broker.FeedOptions{Selector: sel, Since: start, FromStart: fromStart})
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
	f.IntVar(&count, "count", 0, "stop after N events (0: follow until interrupted)")
	return cmd
}
