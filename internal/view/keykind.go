package view

import "github.com/layercake/cascade/internal/event"

// KeyKind names what layer l's row key is (accelerator, workload, model or category): the
// grouping a series takes besides region; "" for a layer the view does not know.
func KeyKind(l event.Layer) string { return keyKinds[l] }
