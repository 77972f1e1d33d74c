// Command trellis is the whole mesh in one binary: control plane, sidecar and CLI.
package main

import (
	"os"

	"github.com/trellis-mesh/trellis/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
