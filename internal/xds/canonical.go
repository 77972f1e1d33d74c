package xds

import (
	"bytes"
	"crypto/sha256"
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
// emptied when full. Whole resources are remembered by resourceTable
// (intern.go).
type anyMemo struct {
	mu sync.Mutex
	// m maps type URL → value → canonical value: two levels, so a lookup
	// (m[url][string(value)]) allocates no key.
	m map[string]map[string][]byte
	n int // entries in m
	// holdsAny remembers mayHoldAny per message type.
	holdsAny map[protoreflect.FullName]bool
}

const anyMemoMax = 8192

func newAnyMemo() *anyMemo {
	return &anyMemo{m: map[string]map[string][]byte{}, holdsAny: map[protoreflect.FullName]bool{}}
}

// canonicalDigest is the SHA-256 of canonicalBytes(m), given plain, m's
// deterministic encoding: the same bytes unless some Any in m is not
// canonical.
func (c *anyMemo) canonicalDigest(m proto.Message, plain []byte) (digest, error) {
	dirty, err := c.needsCanonical(m.ProtoReflect())
	if err != nil {
		return digest{}, err
	}
	if !dirty {
		return sha256.Sum256(plain), nil
	}
	b, err := c.canonicalBytes(m)
	if err != nil {
		return digest{}, err
	}
	return sha256.Sum256(b), nil
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

// eachMessage calls f for every message directly held by m's fields that
// may hold an Any (itself or deeper: mayHoldAny), until f returns an error.
// Skipping the others (a Struct of metadata, an address) keeps the walk to
// the few paths where an Any can be.
func (c *anyMemo) eachMessage(m protoreflect.Message, f func(protoreflect.Message) error) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if md := fd.MapValue().Message(); md == nil || !c.mayHoldAny(md) {
				return true
			}
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = f(mv.Message())
				return err == nil
			})
		case fd.Message() == nil || !c.mayHoldAny(fd.Message()):
		case fd.IsList():
			list := v.List()
			for i := 0; i < list.Len() && err == nil; i++ {
				err = f(list.Get(i).Message())
			}
		default:
			err = f(v.Message())
		}
		return err == nil
	})
	return err
}

// mayHoldAny reports whether a message of type md is an Any or can hold one
// at some depth, remembered per type (a nil memo works it out every time).
func (c *anyMemo) mayHoldAny(md protoreflect.MessageDescriptor) bool {
	if c != nil {
		c.mu.Lock()
		got, ok := c.holdsAny[md.FullName()]
		c.mu.Unlock()
		if ok {
			return got
		}
	}
	got := reachesAny(md)
	if c != nil {
		c.mu.Lock()
		c.holdsAny[md.FullName()] = got
		c.mu.Unlock()
	}
	return got
}

// reachesAny walks the graph of message types reachable from md's fields.
func reachesAny(md protoreflect.MessageDescriptor) bool {
	seen := map[protoreflect.FullName]bool{}
	stack := []protoreflect.MessageDescriptor{md}
	for len(stack) > 0 {
		md := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if md.FullName() == anyName {
			return true
		}
		if seen[md.FullName()] {
			continue
		}
		seen[md.FullName()] = true
		fields := md.Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			if fd.IsMap() {
				fd = fd.MapValue()
			}
			if sub := fd.Message(); sub != nil && !seen[sub.FullName()] {
				stack = append(stack, sub)
			}
		}
	}
	return false
}

// errDirty stops a walk once one Any is found not canonical.
var errDirty = fmt.Errorf("not canonical")

// needsCanonical reports whether some Any in m does not already hold the
// canonical encoding of its content.
func (c *anyMemo) needsCanonical(m protoreflect.Message) (bool, error) {
	var visit func(protoreflect.Message) error
	visit = func(m protoreflect.Message) error {
		if m.Descriptor().FullName() != anyName {
			return c.eachMessage(m, visit)
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
	err := c.eachMessage(m, visit)
	if err == errDirty { //nolint:errorlint // sentinel of this walk, never wrapped
		return true, nil
	}
	return false, err
}

func (c *anyMemo) canonicalizeFields(m protoreflect.Message) error {
	return c.eachMessage(m, c.canonicalizeMessage)
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
	if c != nil {
		c.mu.Lock()
		got, ok := c.m[a.GetTypeUrl()][string(a.GetValue())]
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
		if c.n >= anyMemoMax {
			clear(c.m)
			c.n = 0
		}
		byValue := c.m[a.GetTypeUrl()]
		if byValue == nil {
			byValue = map[string][]byte{}
			c.m[a.GetTypeUrl()] = byValue
		}
		if _, ok := byValue[string(a.GetValue())]; !ok {
			byValue[string(a.GetValue())] = b
			c.n++
		}
		c.mu.Unlock()
	}
	return b, nil
}
