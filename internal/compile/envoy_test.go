package compile

import (
	"bytes"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestToAnyDeterministic: packing equal content gives equal bytes, maps
// included, and the bytes decode to the content.
func TestToAnyDeterministic(t *testing.T) {
	fields := map[string]any{}
	for i := range 64 {
		fields[fmt.Sprintf("k%02d", i)] = i
	}
	st, err := structpb.NewStruct(fields)
	if err != nil {
		t.Fatal(err)
	}
	first, err := toAny(st)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		a, err := toAny(st)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.GetValue(), first.GetValue()) || a.GetTypeUrl() != first.GetTypeUrl() {
			t.Fatalf("pass %d: equal content packed to different bytes", i)
		}
	}
	back := &structpb.Struct{}
	if err := first.UnmarshalTo(back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(back, st) {
		t.Error("packed content does not decode to the original")
	}
}

// TestEndpointMetadata: the directly built metadata equals what
// structpb.NewStruct makes of the same map, and invalid UTF-8 is refused
// as NewStruct refuses it.
func TestEndpointMetadata(t *testing.T) {
	tests := []struct {
		workload, identity string
		wantErr            bool
	}{
		{"reviews-v1", "spiffe://cluster.local/ns/default/sa/reviews", false},
		{"", "", false},
		{"bad\xff", "spiffe://cluster.local/ns/default/sa/x", true},
		{"ok", "spiffe://bad\xfe", true},
	}
	for _, tc := range tests {
		got, err := endpointMetadata(tc.workload, tc.identity)
		want, wantErr := structpb.NewStruct(map[string]any{"workload": tc.workload, "identity": tc.identity})
		if (err != nil) != tc.wantErr || (wantErr != nil) != tc.wantErr {
			t.Errorf("%q, %q: err %v (NewStruct: %v), want error %v", tc.workload, tc.identity, err, wantErr, tc.wantErr)
			continue
		}
		if err == nil && !proto.Equal(got, want) {
			t.Errorf("%q, %q: %v, want %v", tc.workload, tc.identity, got, want)
		}
	}
}
