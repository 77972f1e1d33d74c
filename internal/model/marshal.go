package model

import (
	"encoding/json"
	"fmt"

	"sigs.k8s.io/yaml"
)

// Marshal renders obj for `trellis get`: format is "yaml" or "json" (indented).
func Marshal(obj Object, format string) ([]byte, error) {
	if obj == nil {
		return nil, fmt.Errorf("marshal: nil object")
	}
	switch format {
	case "json":
		b, err := json.MarshalIndent(obj, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("marshal %s as json: %w", obj.Key(), err)
		}
		return append(b, '\n'), nil
	case "yaml", "":
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("marshal %s as yaml: %w", obj.Key(), err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("marshal: unknown format %q, want yaml or json", format)
}
