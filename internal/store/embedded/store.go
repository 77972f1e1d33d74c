// Package embedded is the bbolt-backed Store used in local and universal
// mode: one file in the data directory, one writer process at a time.
//
//	Put/PutAll/Delete ──► bolt write tx ──commit──► dispatch ──► watcher buffers ──► Watch channels
//	Get/List ──────────► bolt read tx (concurrent with writes)
//
// Every record lives in one bucket keyed "kind\x00namespace\x00name", so a
// cursor walks records in the order List promises. The bucket's sequence is
// the store-wide revision counter: each written or deleted record takes the
// next value. Writes are serialized by a mutex that is held across the bolt
// commit and the dispatch to watchers, so watchers see events in revision
// order and a watcher registered after a write never sees it.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/trellis-mesh/trellis/internal/store"
)

// ErrClosed is returned by operations on a Store after Close.
var ErrClosed = errors.New("store closed")

const (
	// lockTimeout bounds how long Open waits for another process to release
	// the file lock.
	lockTimeout = 2 * time.Second
	// defaultWatchBuffer is how many events a watcher may fall behind before
	// its channel is closed.
	defaultWatchBuffer = 1024
	schemaVersion      = "1"
)

var (
	recordsBucket = []byte("records")
	metaBucket    = []byte("meta")
	schemaKey     = []byte("schema")
)

// Store is a store.Store backed by a bbolt file.
type Store struct {
	db          *bolt.DB
	path        string
	logger      *slog.Logger
	watchBuffer int

	// mu serializes writes with their dispatch, and guards watchers and closed.
	mu       sync.Mutex
	watchers map[*watcher]struct{}
	closed   bool
}

var _ store.Store = (*Store)(nil)

// Open opens (creating it and its directories if needed) the store file at
// path. If another process holds the file, Open fails after about two
// seconds. A nil logger discards logs.
func Open(path string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if path == "" {
		return nil, errors.New("open store: path is empty")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: create directory: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: file is locked by another process (is another trellis control plane using this data directory?): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := db.Update(initBuckets); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	logger.Info("store opened", "path", path)
	return &Store{
		db:          db,
		path:        path,
		logger:      logger,
		watchBuffer: defaultWatchBuffer,
		watchers:    make(map[*watcher]struct{}),
	}, nil
}

func initBuckets(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(recordsBucket); err != nil {
		return fmt.Errorf("create bucket %s: %w", recordsBucket, err)
	}
	meta, err := tx.CreateBucketIfNotExists(metaBucket)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", metaBucket, err)
	}
	switch v := meta.Get(schemaKey); {
	case v == nil:
		if err := meta.Put(schemaKey, []byte(schemaVersion)); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
	case string(v) != schemaVersion:
		return fmt.Errorf("schema version %q, this binary understands %q", v, schemaVersion)
	}
	return nil
}

// Get returns one record, or an error wrapping store.ErrNotFound.
func (s *Store) Get(ctx context.Context, kind, namespace, name string) (store.Record, error) {
	key, err := recordKey(kind, namespace, name)
	if err != nil {
		return store.Record{}, fmt.Errorf("get %s %s/%s: %w", kind, namespace, name, err)
	}
	if err := ctx.Err(); err != nil {
		return store.Record{}, fmt.Errorf("get %s %s/%s: %w", kind, namespace, name, err)
	}
	var rec store.Record
	err = s.view(func(b *bolt.Bucket) error {
		val := b.Get(key)
		if val == nil {
			return store.ErrNotFound
		}
		var err error
		rec, err = decodeRecord(key, val)
		return err
	})
	if err != nil {
		return store.Record{}, fmt.Errorf("get %s %s/%s: %w", kind, namespace, name, err)
	}
	return rec, nil
}

// List returns every record of kind ("" for all kinds), sorted by kind,
// namespace and name.
func (s *Store) List(ctx context.Context, kind string) ([]store.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %q: %w", kind, err)
	}
	var prefix []byte
	if kind != "" {
		prefix = kindPrefix(kind)
	}
	var recs []store.Record
	err := s.view(func(b *bolt.Bucket) error {
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
			rec, err := decodeRecord(k, v)
			if err != nil {
				return err
			}
			recs = append(recs, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", kind, err)
	}
	return recs, nil
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}

// Put creates or replaces a record. A non-zero rec.Revision must equal the
// stored revision, else Put fails with store.ErrConflict (also when the
// record does not exist).
func (s *Store) Put(ctx context.Context, rec store.Record) (store.Record, error) {
	out, err := s.PutAll(ctx, []store.Record{rec})
	if err != nil {
		return store.Record{}, err
	}
	return out[0], nil
}

// Create writes rec only if no record with its kind, namespace and name
// exists; otherwise it fails with store.ErrConflict. rec.Revision is
// ignored. It lets two processes race to initialize a record (the CA root)
// and agree on the winner.
func (s *Store) Create(ctx context.Context, rec store.Record) (store.Record, error) {
	var out store.Record
	err := s.update(ctx, func(b *bolt.Bucket, evs *[]store.Event) error {
		var err error
		out, err = putRecord(b, rec, true, evs)
		return err
	})
	if err != nil {
		return store.Record{}, fmt.Errorf("create %s: %w", describe(rec), err)
	}
	return out, nil
}

// PutAll writes every record in one bolt transaction: if any record is
// invalid or fails its revision check, nothing is stored. Each record takes
// its own revision, in slice order.
func (s *Store) PutAll(ctx context.Context, recs []store.Record) ([]store.Record, error) {
	if len(recs) == 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("put: %w", err)
		}
		return nil, nil
	}
	out := make([]store.Record, len(recs))
	err := s.update(ctx, func(b *bolt.Bucket, evs *[]store.Event) error {
		for i, rec := range recs {
			var err error
			if out[i], err = putRecord(b, rec, false, evs); err != nil {
				if len(recs) == 1 {
					return err
				}
				return fmt.Errorf("record %d (%s): %w", i, describe(rec), err)
			}
		}
		return nil
	})
	switch {
	case err == nil:
		return out, nil
	case len(recs) == 1:
		return nil, fmt.Errorf("put %s: %w", describe(recs[0]), err)
	default:
		return nil, fmt.Errorf("put %d records: %w", len(recs), err)
	}
}

// putRecord writes one record inside a write transaction and appends its
// event. With create set, an existing record is a conflict.
func putRecord(b *bolt.Bucket, rec store.Record, create bool, evs *[]store.Event) (store.Record, error) {
	key, err := recordKey(rec.Kind, rec.Namespace, rec.Name)
	if err != nil {
		return store.Record{}, err
	}
	cur := b.Get(key)
	switch {
	case create && cur != nil:
		return store.Record{}, fmt.Errorf("record already exists: %w", store.ErrConflict)
	case !create && rec.Revision != 0 && cur == nil:
		return store.Record{}, fmt.Errorf("expected revision %d, record does not exist: %w", rec.Revision, store.ErrConflict)
	case !create && rec.Revision != 0:
		stored, _, err := decodeValue(cur)
		if err != nil {
			return store.Record{}, err
		}
		if stored != rec.Revision {
			return store.Record{}, fmt.Errorf("expected revision %d, stored %d: %w", rec.Revision, stored, store.ErrConflict)
		}
	}
	rev, err := b.NextSequence()
	if err != nil {
		return store.Record{}, fmt.Errorf("next revision: %w", err)
	}
	val := encodeValue(rev, rec.Data)
	if err := b.Put(key, val); err != nil {
		return store.Record{}, fmt.Errorf("write: %w", err)
	}
	rec.Revision = rev
	evRec := rec
	evRec.Data = val[revLen:]
	*evs = append(*evs, store.Event{Type: store.EventPut, Record: evRec})
	return rec, nil
}

// Delete removes a record; it returns an error wrapping store.ErrNotFound
// when there is none. The deletion takes a revision of its own.
func (s *Store) Delete(ctx context.Context, kind, namespace, name string) error {
	key, err := recordKey(kind, namespace, name)
	if err != nil {
		return fmt.Errorf("delete %s %s/%s: %w", kind, namespace, name, err)
	}
	err = s.update(ctx, func(b *bolt.Bucket, evs *[]store.Event) error {
		if b.Get(key) == nil {
			return store.ErrNotFound
		}
		rev, err := b.NextSequence()
		if err != nil {
			return fmt.Errorf("next revision: %w", err)
		}
		if err := b.Delete(key); err != nil {
			return err
		}
		*evs = append(*evs, store.Event{Type: store.EventDelete, Record: store.Record{
			Kind: kind, Namespace: namespace, Name: name, Revision: rev,
		}})
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete %s %s/%s: %w", kind, namespace, name, err)
	}
	return nil
}

// Close ends every watch (their channels are closed) and closes the file.
// Calling it again returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for w := range s.watchers {
		s.removeWatcherLocked(w)
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	s.logger.Info("store closed", "path", s.path)
	return nil
}

// view runs fn in a read transaction on the records bucket.
func (s *Store) view(fn func(b *bolt.Bucket) error) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		return fn(tx.Bucket(recordsBucket))
	})
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// update runs fn in a write transaction and, once it has committed,
// delivers the events fn collected. Holding mu across both keeps delivery in
// revision order.
func (s *Store) update(ctx context.Context, fn func(b *bolt.Bucket, evs *[]store.Event) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	var evs []store.Event
	err := s.db.Update(func(tx *bolt.Tx) error {
		evs = evs[:0]
		return fn(tx.Bucket(recordsBucket), &evs)
	})
	if err != nil {
		return err
	}
	s.dispatchLocked(evs)
	return nil
}
