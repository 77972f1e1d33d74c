package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
)

// quantityRegex is a non-negative Kubernetes quantity with a decimal or
// binary SI suffix ("500m", "1", "1.5k", "2Ki").
var quantityRegex = regexp.MustCompile(`^\+?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$`)

var quantityScale = map[string]*big.Rat{
	"": big.NewRat(1, 1), "m": big.NewRat(1, 1000),
	"k": big.NewRat(1e3, 1), "M": big.NewRat(1e6, 1), "G": big.NewRat(1e9, 1), "T": big.NewRat(1e12, 1),
	"Ki": big.NewRat(1<<10, 1), "Mi": big.NewRat(1<<20, 1), "Gi": big.NewRat(1<<30, 1), "Ti": big.NewRat(1<<40, 1),
}

// quantityMilli parses a weight written as a Kubernetes quantity (a JSON
// string or number) into thousandths: "500m" is 500, 1 is 1000.
func quantityMilli(x any) (uint64, error) {
	var s string
	switch q := x.(type) {
	case string:
		s = q
	case float64:
		s = strconv.FormatFloat(q, 'f', -1, 64)
	case json.Number:
		s = q.String()
	case nil:
		return 0, errors.New("required")
	default:
		return 0, fmt.Errorf("want a quantity such as \"500m\" or 1, got %s", jsonKind(x))
	}
	m := quantityRegex.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a non-negative quantity such as \"500m\" or \"1\"", s)
	}
	r, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, fmt.Errorf("%q is not a quantity", s)
	}
	r.Mul(r, quantityScale[m[2]]).Mul(r, big.NewRat(1000, 1))
	if !r.IsInt() {
		return 0, fmt.Errorf("%q is finer than 1m", s)
	}
	if !r.Num().IsUint64() || r.Num().Uint64() > math.MaxUint32 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return r.Num().Uint64(), nil
}

// wholeWeight parses a weight that must be a whole number.
func wholeWeight(x any) (uint64, error) {
	var s string
	switch q := x.(type) {
	case float64:
		s = strconv.FormatFloat(q, 'f', -1, 64)
	case json.Number:
		s = q.String()
	case nil:
		return 0, errors.New("required")
	default:
		return 0, fmt.Errorf("want a whole number, got %s", jsonKind(x))
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s is not a whole number 0..%d", s, uint32(math.MaxUint32))
	}
	return n, nil
}

// reduceWeights checks relative weights: not all zero, and a sum that
// fits the int32 weights of a VirtualService (Envoy sums them in a uint32).
// Weights that do not fit are divided by their greatest common divisor.
func reduceWeights(w []uint64) ([]uint32, error) {
	var g, sum uint64
	for _, x := range w {
		g = gcd(g, x)
		sum += x
	}
	if g == 0 {
		return nil, errors.New("weights are all zero: no backend would get traffic")
	}
	if sum <= math.MaxInt32 {
		g = 1
	} else if sum/g > math.MaxInt32 {
		return nil, fmt.Errorf("weights sum to %d (%d after dividing by their common divisor %d), want at most %d", sum, sum/g, g, math.MaxInt32)
	}
	out := make([]uint32, len(w))
	for i, x := range w {
		out[i] = uint32(x / g)
	}
	return out, nil
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
