// Command cascade is the event-driven demand propagation pipeline for the five-layer AI stack.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/layercake/cascade/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Args: os.Args[1:], Getenv: os.Getenv}.Run(ctx)
	stop()
	os.Exit(code)
}
