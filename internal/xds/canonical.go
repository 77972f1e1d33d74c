package xds

import (
	"bytes"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

var anyName = (&anypb.Any{}).ProtoReflect().Descriptor().FullName()

// canonicalBytes returns the deterministic encoding of m in which every Any
// (at any depth) also holds the deterministic encoding of its content. An
// Any packed with plain proto.Marshal carries maps in random order; without
// this, equal configurations could hash differently and be pushed again.
// m is not modified. An Any of a type unknown to this binary is kept as is.
func canonicalBytes(m proto.Message) ([]byte, error) { return (*anyMemo)(nil).canonicalBytes(m) }

// anyMemo remembers the canonical encoding of Any contents already seen.
// The same Any (a router filter, a service's TLS context) appears in many
// proxies' resources, so most lookups hit and m needs neither a clone nor a
// re-encoding of its Anys. A nil memo remembers nothing. Bounded: it is
// emptied when full.
type anyMemo struct {
	mu sync.Mutex
	m  map[string][]byte // type URL + "\x00" + value → canonical value
	// byRes holds the canonical bytes of whole resources by identity: a
	// compiler may hand the same resource (a service's cluster and
	// endpoints) to many nodes. Resources given to SetResources are never
	// modified afterwards, and a key held here cannot be freed and reused.
	byRes map[proto.Message][]byte
}

const anyMemoMax = 8192

func newAnyMemo() *anyMemo {
	return &anyMemo{m: map[string][]byte{}, byRes: map[proto.Message][]byte{}}
}

// resourceBytes is canonicalBytes remembered by resource identity.
func (c *anyMemo) resourceBytes(m proto.Message) ([]byte, error) {
	if c == nil {
		return canonicalBytes(m)
	}
	c.mu.Lock()
	got, ok := c.byRes[m]
	c.mu.Unlock()
	if ok {
		return got, nil
	}
	b, err := c.canonicalBytes(m)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.byRes) >= anyMemoMax {
		clear(c.byRes)
	}
	c.byRes[m] = b
	c.mu.Unlock()
	return b, nil
}

func (c *anyMemo) canonicalBytes(m proto.Message) ([]byte, error) {
	dirty, err := c.needsCanonical(m.ProtoReflect())
	if err != nil {
		return nil, err
	}
	if dirty {
		clone := proto.Clone(m)
		if err := c.canonicalizeFields(clone.ProtoReflect()); err != nil {
			return nil, err
		}
		m = clone
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// eachMessage calls f for every message directly held by m's fields, until f
// returns false or an error.
func eachMessage(m protoreflect.Message, f func(protoreflect.Message) error) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = f(mv.Message())
				return err == nil
			})
		case fd.IsList():
			if fd.Message() == nil {
				return true
			}
			list := v.List()
			for i := 0; i < list.Len() && err == nil; i++ {
				err = f(list.Get(i).Message())
			}
		case fd.Message() != nil:
			err = f(v.Message())
		}
		return err == nil
	})
	return err
}

// errDirty stops a walk once one Any is found not canonical.
var errDirty = fmt.Errorf("not canonical")

// needsCanonical reports whether some Any in m does not already hold the
// canonical encoding of its content.
func (c *anyMemo) needsCanonical(m protoreflect.Message) (bool, error) {
	var visit func(protoreflect.Message) error
	visit = func(m protoreflect.Message) error {
		if m.Descriptor().FullName() != anyName {
			return eachMessage(m, visit)
		}
		a, ok := m.Interface().(*anypb.Any)
		if !ok {
			return nil
		}
		canon, err := c.canonicalAny(a)
		if err != nil {
			return err
		}
		if !bytes.Equal(canon, a.GetValue()) {
			return errDirty
		}
		return nil
	}
	err := eachMessage(m, visit)
	if err == errDirty { //nolint:errorlint // sentinel of this walk, never wrapped
		return true, nil
	}
	return false, err
}

func (c *anyMemo) canonicalizeFields(m protoreflect.Message) error {
	return eachMessage(m, c.canonicalizeMessage)
}

func (c *anyMemo) canonicalizeMessage(m protoreflect.Message) error {
	if m.Descriptor().FullName() != anyName {
		return c.canonicalizeFields(m)
	}
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		return nil
	}
	canon, err := c.canonicalAny(a)
	if err != nil {
		return err
	}
	a.Value = canon
	return nil
}

// canonicalAny returns the canonical encoding of a's content (its value as
// is when the type is unknown or the content unparsable).
func (c *anyMemo) canonicalAny(a *anypb.Any) ([]byte, error) {
	var key string
	if c != nil {
		key = a.GetTypeUrl() + "\x00" + string(a.GetValue())
		c.mu.Lock()
		got, ok := c.m[key]
		c.mu.Unlock()
		if ok {
			return got, nil
		}
	}
	inner, err := a.UnmarshalNew()
	if err != nil {
		return a.GetValue(), nil //nolint:nilerr // unknown or unparsable content: hash its bytes as they are
	}
	if err := c.canonicalizeFields(inner.ProtoReflect()); err != nil {
		return nil, err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(inner)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
	}
	if c != nil {
		c.mu.Lock()
		if len(c.m) >= anyMemoMax {
			clear(c.m)
		}
		c.m[key] = b
		c.mu.Unlock()
	}
	return b, nil
}
