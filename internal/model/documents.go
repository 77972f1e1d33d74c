package model

import "errors"

// DecodeAndValidate is the validation `trellis validate` runs offline and
// `trellis apply` runs in the control plane: decode with field paths, then
// the semantic checks of every document.
func DecodeAndValidate(body []byte, source string) ([]Object, []string, error) {
	objs, err := Decode(body, source)
	if err != nil {
		return nil, nil, err
	}
	var warnings []string
	var errs []error
	for _, obj := range objs {
		w, err := Validate(obj)
		warnings = append(warnings, w...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return objs, warnings, errors.Join(errs...)
}
