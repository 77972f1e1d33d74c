// Package up runs a whole mesh on one machine: `trellis up -f mesh.yaml`.
//
//	mesh.yaml ─► model.Decode/Validate
//	          ─► control plane (in-process, or --control to use a running one)
//	          ─► join token, other documents applied (DestinationRules...)
//	          ─► free loopback ports for every app, inbound, admin and upstream listener
//	          ─► one `trellis proxy` per workload ──wait /ready──►
//	          ─► one app per workload (env: its address, its upstreams) ──wait port──►
//	          ─► print the entry URL; run until SIGINT/SIGTERM
//	stop      ─► apps, then sidecars (they drain), then the control plane
package up

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/controlplane"
	"github.com/trellis-mesh/trellis/internal/model"
)

// Options configure one `trellis up`.
type Options struct {
	File      string
	Control   string // admin API URL of a running control plane; empty = start one in-process
	AdminAddr string // for the in-process control plane
	XDSAddr   string
	DataDir   string // empty = a temporary directory, removed at exit
	CertTTL   time.Duration
	// CA is an operator-supplied CA for the in-process control plane
	// (zero: a generated root).
	CA ca.OperatorFiles
	// AdminToken is sent to a running control plane (--use-control) that
	// requires one.
	AdminToken string
	LogLevel   string
	Out        io.Writer
	// Self is the trellis binary to start sidecars and demo apps with.
	Self string
	// StartTimeout bounds how long sidecars and apps may take to become ready.
	StartTimeout time.Duration
}

// Run starts the mesh and blocks until ctx ends, then stops everything it started.
func Run(ctx context.Context, o Options) error {
	data, err := os.ReadFile(o.File)
	if err != nil {
		return err
	}
	mesh, others, err := parseMeshFile(data, o.File)
	if err != nil {
		return err
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 60 * time.Second
	}
	out := &lineWriter{out: o.Out}
	r := &runner{opts: o, mesh: mesh, out: out}

	controlURL := o.Control
	var cpDone chan error
	cpCtx, stopCP := context.WithCancel(context.Background()) // outlives the workloads: sidecars deregister on the way out
	defer stopCP()
	if controlURL == "" {
		dataDir := o.DataDir
		if dataDir == "" {
			if dataDir, err = os.MkdirTemp("", "trellis-up-"); err != nil {
				return err
			}
			defer os.RemoveAll(dataDir)
		}
		var level slog.Level
		_ = level.UnmarshalText([]byte(o.LogLevel))
		logger := slog.New(slog.NewTextHandler(out.prefixed("control"), &slog.HandlerOptions{Level: level}))
		cp, err := controlplane.New(ctx, controlplane.Config{
			DataDir: dataDir, AdminAddr: o.AdminAddr, XDSAddr: o.XDSAddr, CertTTL: o.CertTTL, CA: o.CA, Logger: logger,
		})
		if err != nil {
			return fmt.Errorf("control plane: %w", err)
		}
		cpDone = make(chan error, 1)
		go func() { cpDone <- cp.Run(cpCtx) }()
		controlURL = cp.AdminURL()
	}
	r.client = api.NewClient(controlURL, o.AdminToken)
	r.controlURL = controlURL

	err = r.start(ctx, others)
	if err == nil {
		fmt.Fprintf(o.Out, "\nTrellis mesh %q is up: %d workloads, control plane %s\n", mesh.Name, len(r.workloads), controlURL)
		if r.entry != "" {
			fmt.Fprintf(o.Out, "Open %s\n", r.entry)
		}
		fmt.Fprintf(o.Out, "In another terminal: trellis status --control %s\nPress Ctrl-C to stop.\n\n", controlURL)
		err = r.supervise(ctx)
	}
	r.stopAll()
	stopCP()
	if cpDone != nil {
		if cpErr := <-cpDone; cpErr != nil && err == nil {
			err = cpErr
		}
	}
	return err
}

// parseMeshFile returns the file's Mesh and its other documents.
func parseMeshFile(data []byte, source string) (*model.Mesh, []model.Object, error) {
	objs, _, err := model.DecodeAndValidate(data, source)
	if err != nil {
		return nil, nil, err
	}
	var mesh *model.Mesh
	var others []model.Object
	for _, obj := range objs {
		if m, ok := obj.(*model.Mesh); ok {
			if mesh != nil {
				return nil, nil, fmt.Errorf("%s: %s: a file holds one Mesh, found a second", source, m.Key())
			}
			mesh = m
			continue
		}
		others = append(others, obj)
	}
	if mesh == nil {
		return nil, nil, fmt.Errorf("%s: no document of kind Mesh (apiVersion %s)", source, model.APIVersionTrellis)
	}
	return mesh, others, nil
}

// envName is the variable an app reads an upstream's address from:
// "reviews" → TRELLIS_UPSTREAM_REVIEWS.
func envName(service string) string {
	return "TRELLIS_UPSTREAM_" + strings.ToUpper(strings.ReplaceAll(service, "-", "_"))
}

var errStartTimeout = errors.New("timed out")
