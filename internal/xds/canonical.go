package xds

import (
	"fmt"

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
func canonicalBytes(m proto.Message) ([]byte, error) {
	c := proto.Clone(m)
	if err := canonicalizeFields(c.ProtoReflect()); err != nil {
		return nil, err
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(c)
}

func canonicalizeFields(m protoreflect.Message) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = canonicalizeMessage(mv.Message())
				return err == nil
			})
		case fd.IsList():
			if fd.Message() == nil {
				return true
			}
			list := v.List()
			for i := 0; i < list.Len() && err == nil; i++ {
				err = canonicalizeMessage(list.Get(i).Message())
			}
		case fd.Message() != nil:
			err = canonicalizeMessage(v.Message())
		}
		return err == nil
	})
	return err
}

func canonicalizeMessage(m protoreflect.Message) error {
	if m.Descriptor().FullName() != anyName {
		return canonicalizeFields(m)
	}
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		return nil
	}
	inner, err := a.UnmarshalNew()
	if err != nil {
		return nil //nolint:nilerr // unknown or unparsable content: hash its bytes as they are
	}
	if err := canonicalizeFields(inner.ProtoReflect()); err != nil {
		return err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(inner)
	if err != nil {
		return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
	}
	a.Value = b
	return nil
}
