package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/model"
)

// token prints a fresh join token of the control plane at control.
func token(control string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t, err := api.NewClient(control, "").CreateToken(ctx)
	if err != nil {
		return fmt.Errorf("create join token: %w", err)
	}
	fmt.Println(t)
	return nil
}

// joinClient returns an admin API client carrying a fresh join token.
func joinClient(ctx context.Context, control string) (*api.Client, error) {
	t, err := api.NewClient(control, "").CreateToken(ctx)
	if err != nil {
		return nil, fmt.Errorf("create join token: %w", err)
	}
	return api.NewClient(control, t), nil
}

// benchWorkload is a workload that no sidecar runs: a name the CA can issue
// an SVID for, or a service a sidecar's config has to carry.
func benchWorkload(name, service string, inboundPort int) *model.Workload {
	addr := "127.0.0.1:" + strconv.Itoa(inboundPort)
	return &model.Workload{
		TypeMeta:   model.TypeMeta{APIVersion: "trellis.dev/v1", Kind: model.KindWorkload},
		ObjectMeta: model.ObjectMeta{Name: name, Namespace: model.DefaultNamespace},
		Spec: model.WorkloadSpec{
			Service: service,
			Ports:   []model.WorkloadPort{{Port: 8080, Protocol: model.ProtocolHTTP, App: addr, Inbound: addr}},
		},
	}
}

// certs registers one workload per name (service = name) with the control
// plane at control and has the mesh CA sign a certificate for each, the way
// a sidecar does: DIR/NAME.crt (chain), DIR/NAME.key, DIR/NAME.pem (chain
// and key, for HAProxy) and DIR/root.pem (the trust bundle). The peers of
// the benchmark then carry genuine mesh SVIDs.
func certs(control, dir string, names []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := joinClient(ctx, control)
	if err != nil {
		return err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("control plane info: %w", err)
	}
	td, err := spiffeid.TrustDomainFromString(info.TrustDomain)
	if err != nil {
		return fmt.Errorf("trust domain %q: %w", info.TrustDomain, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	for _, name := range names {
		// Port 9 (discard) is never served here: nothing routes to these workloads.
		if _, err := c.Register(ctx, benchWorkload(name, name, 9)); err != nil {
			return fmt.Errorf("register %s: %w", name, err)
		}
		id, err := ca.WorkloadID(td, model.DefaultNamespace, name)
		if err != nil {
			return err
		}
		key, err := ca.NewKey()
		if err != nil {
			return err
		}
		csr, err := ca.NewCSR(key, id)
		if err != nil {
			return err
		}
		resp, err := c.Sign(ctx, api.CertificateRequest{
			Workload: name,
			CSR:      string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
		})
		if err != nil {
			return fmt.Errorf("sign certificate of %s: %w", name, err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return fmt.Errorf("encode key of %s: %w", name, err)
		}
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		files := map[string][]byte{
			name + ".crt": []byte(resp.Chain),
			name + ".key": keyPEM,
			name + ".pem": append([]byte(resp.Chain), keyPEM...),
			"root.pem":    []byte(resp.Bundle),
		}
		for f, data := range files {
			if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
				return fmt.Errorf("certs: %w", err)
			}
		}
		fmt.Printf("%s %s\n", name, id)
	}
	return nil
}

// register registers n workloads PREFIX-001... each the only instance of a
// service of the same name, with an inbound address nothing serves: extra
// services for a sidecar's config, without a process each. Each gets one
// ready heartbeat so that its endpoint starts HEALTHY.
func register(control, prefix string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := joinClient(ctx, control)
	if err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		if _, err := c.Register(ctx, benchWorkload(name, name, 9)); err != nil {
			return fmt.Errorf("register %s: %w", name, err)
		}
		if err := c.Heartbeat(ctx, model.DefaultNamespace, name, true); err != nil {
			return fmt.Errorf("heartbeat %s: %w", name, err)
		}
	}
	return nil
}
