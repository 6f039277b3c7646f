package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

// dlqSelector selects the scenario's dead letters of one layer, or of all for "*"; a layer
// that has none is a usage error naming --layer.
func (a *app) dlqSelector(layer string) (broker.Selector, error) {
	sel := broker.Selector{Scenario: a.g.scenario, Kinds: []event.Kind{event.KindDLQ}}
	if layer != event.Any {
		sel.Layers = []event.Layer{event.Layer(layer)}
	}
	if err := sel.Validate(); err != nil {
		return sel, usageError("--layer %q: %w", layer, err)
	}
	return sel, nil
}

// deadLetters reads every dead letter sel selects present now.
func deadLetters(ctx context.Context, b broker.Broker, sel broker.Selector, fn func(broker.Delivery) error) error {
	return broker.Each(ctx, b, broker.FeedOptions{Selector: sel, FromStart: true}, fn)
}

func (a *app) dlqCmd() *cobra.Command {
	var layer string
	cmd := &cobra.Command{Use: "dlq", Short: "Inspect and re-drive dead letters"}
	cmd.PersistentFlags().StringVar(&layer, "layer", "*", "only this layer's dead letters")
	cmd.AddCommand(&cobra.Command{
		Use:     "ls",
		Short:   "Print dead letters as NDJSON: error, kind, layer, original subject and body",
		Example: "  cascade dlq ls\n  cascade dlq ls --layer chips --scenario half-util",
		Args:    cobra.NoArgs,
		RunE: a.onDeadLetters(&layer, func(ctx context.Context, b broker.Broker, sel broker.Selector) error {
			enc := json.NewEncoder(a.Stdout)
			return deadLetters(ctx, b, sel, func(d broker.Delivery) error {
				m := d.Message()
				line := map[string]any{
					"seq": d.Seq(), "time": d.Time().UTC(), "layer": m.Header[broker.HeaderLayer],
					"kind": m.Header[broker.HeaderErrorKind], "error": m.Header[broker.HeaderError],
					"subject": m.Header[broker.HeaderOriginalSubject], "msg_id": m.Header[broker.HeaderOriginalMsgID],
					"deliveries": m.Header[broker.HeaderDeliveries], "body": string(m.Data),
				}
				if n := m.Header[broker.HeaderTruncated]; n != "" {
					line["truncated_from"] = n
				}
				return enc.Encode(line)
			})
		}),
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "redrive",
		Short: "Re-publish dead letters to their original subjects (after fixing coefficients, say)",
		Long: `Re-publishes each dead letter's original bytes to its original subject. Each dead letter is
re-driven under the id redrive:<dlq sequence>, so running redrive twice within the de-dup window
publishes it once. Dead letters whose bodies were cut to fit the broker (Cascade-Truncated) are
skipped.`,
		Example: "  cascade dlq redrive --layer chips",
		Args:    cobra.NoArgs,
		RunE: a.onDeadLetters(&layer, func(ctx context.Context, b broker.Broker, sel broker.Selector) error {
			var msgs []broker.Message
			cut := 0
			err := deadLetters(ctx, b, sel, func(d broker.Delivery) error {
				m := d.Message()
				if m.Header[broker.HeaderTruncated] != "" {
					cut++ // its body is incomplete
					return nil
				}
				msgs = append(msgs, broker.Message{Subject: m.Header[broker.HeaderOriginalSubject], ID: "redrive:" + d.Cursor(), Key: m.Key, Data: m.Data})
				return nil
			})
			if err != nil {
				return err
			}
			if len(msgs) > 0 {
				if err := b.Publish(ctx, msgs); err != nil {
					return err
				}
			}
			fmt.Fprintf(a.Stdout, "re-drove %d dead letters\n", len(msgs))
			if cut > 0 {
				fmt.Fprintf(a.Stdout, "skipped %d dead letters whose bodies were cut to fit the broker (%s)\n", cut, broker.HeaderTruncated)
			}
			return nil
		}),
	})
	return cmd
}

// onDeadLetters is the run of a dlq subcommand: --layer checked, then fn on a connected broker
// with the selection of the scenario's dead letters.
func (a *app) onDeadLetters(layer *string, fn func(ctx context.Context, b broker.Broker, sel broker.Selector) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		sel, err := a.dlqSelector(*layer)
		if err != nil {
			return err
		}
		return a.withBroker(cmd.Context(), func(b broker.Broker) error { return fn(cmd.Context(), b, sel) })
	}
}
