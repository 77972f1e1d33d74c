// Package store is where the control plane keeps mesh configuration, workload
// registrations and the CA root. Backends (embedded bbolt today; Kubernetes and
// etcd later) implement Store and pass the shared suite in storetest.
//
//	apply/register ──Put/PutAll/Delete──► Store ──Watch──► control plane (recompile, push)
package store

import (
	"context"
	"errors"
)

// ErrNotFound is returned by Get and Delete when the record does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned by Put when a non-zero expected revision does not
// match the stored one.
var ErrConflict = errors.New("revision conflict")

// Record is one stored object. Data is opaque to the store (JSON in practice).
type Record struct {
	Kind      string
	Namespace string
	Name      string
	// Revision is assigned by the store on every write: a store-wide counter
	// that only grows. On Put, a non-zero Revision is an expectation (CAS).
	Revision uint64
	Data     []byte
}

// EventType says what happened to a record.
type EventType int

const (
	EventPut EventType = iota + 1
	EventDelete
)

// Event is one change seen by a watcher. For EventDelete, Record.Data is nil
// and Record.Revision is the revision of the deletion.
type Event struct {
	Type   EventType
	Record Record
}

// Store is the interface every backend implements.
type Store interface {
	Get(ctx context.Context, kind, namespace, name string) (Record, error)
	// List returns every record of kind ("" lists every kind), sorted by
	// kind, namespace, name.
	List(ctx context.Context, kind string) ([]Record, error)
	// Put creates or replaces a record and returns it with its new revision.
	Put(ctx context.Context, rec Record) (Record, error)
	// Create writes a record only if none exists under its key, else
	// returns ErrConflict. (Put's zero revision means "no expectation", so
	// it cannot say "must not exist"; the CA needs that to agree on one root.)
	Create(ctx context.Context, rec Record) (Record, error)
	// PutAll writes every record in one transaction: all or nothing.
	PutAll(ctx context.Context, recs []Record) ([]Record, error)
	Delete(ctx context.Context, kind, namespace, name string) error
	// Watch delivers every change after the call, for kind ("" = all kinds),
	// in revision order, until ctx ends; then the channel is closed. A slow
	// watcher must not block writers: the backend buffers, and if a watcher
	// falls too far behind its channel is closed early (it re-lists and
	// watches again).
	Watch(ctx context.Context, kind string) (<-chan Event, error)
	Close() error
}
