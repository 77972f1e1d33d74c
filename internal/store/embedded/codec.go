package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/trellis-mesh/trellis/internal/store"
)

// Keys are "kind\x00namespace\x00name", so bolt's byte order is the order
// List promises: by kind, then namespace, then name. Values are the record's
// revision (8 bytes, big endian) followed by its data.

const sep = "\x00"

const revLen = 8

var errInvalidKey = errors.New("invalid record key")

// recordKey validates the identifying fields of a record and encodes them.
// Callers name the record in their own error context.
func recordKey(kind, namespace, name string) ([]byte, error) {
	switch {
	case kind == "":
		return nil, fmt.Errorf("%w: kind is empty", errInvalidKey)
	case name == "":
		return nil, fmt.Errorf("%w: name is empty", errInvalidKey)
	case strings.Contains(kind, sep), strings.Contains(namespace, sep), strings.Contains(name, sep):
		return nil, fmt.Errorf("%w: contains a NUL byte", errInvalidKey)
	}
	key := []byte(kind + sep + namespace + sep + name)
	if len(key) > bolt.MaxKeySize {
		return nil, fmt.Errorf("%w: longer than %d bytes", errInvalidKey, bolt.MaxKeySize)
	}
	return key, nil
}

// kindPrefix is the key prefix shared by every record of kind.
func kindPrefix(kind string) []byte {
	return []byte(kind + sep)
}

// parseKey splits a stored key back into kind, namespace and name.
func parseKey(key []byte) (kind, namespace, name string, err error) {
	parts := strings.SplitN(string(key), sep, 3)
	if len(parts) != 3 {
		return "", "", "", fmt.Errorf("%w: stored key %q has %d parts, want 3", errInvalidKey, key, len(parts))
	}
	return parts[0], parts[1], parts[2], nil
}

// encodeValue returns a fresh buffer holding rev and a copy of data.
func encodeValue(rev uint64, data []byte) []byte {
	buf := make([]byte, revLen+len(data))
	binary.BigEndian.PutUint64(buf, rev)
	copy(buf[revLen:], data)
	return buf
}

// decodeValue reads a stored value. The returned data is a copy: bolt's
// memory is only valid inside the transaction.
func decodeValue(val []byte) (rev uint64, data []byte, err error) {
	if len(val) < revLen {
		return 0, nil, fmt.Errorf("stored value is %d bytes, want at least %d", len(val), revLen)
	}
	rev = binary.BigEndian.Uint64(val)
	data = make([]byte, len(val)-revLen)
	copy(data, val[revLen:])
	return rev, data, nil
}

// decodeRecord turns a stored key/value pair into a Record.
func decodeRecord(key, val []byte) (store.Record, error) {
	kind, ns, name, err := parseKey(key)
	if err != nil {
		return store.Record{}, err
	}
	rev, data, err := decodeValue(val)
	if err != nil {
		return store.Record{}, fmt.Errorf("%s %s/%s: %w", kind, ns, name, err)
	}
	return store.Record{Kind: kind, Namespace: ns, Name: name, Revision: rev, Data: data}, nil
}

func describe(rec store.Record) string {
	return fmt.Sprintf("%s %s/%s", rec.Kind, rec.Namespace, rec.Name)
}
