package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"

	"sigs.k8s.io/yaml"
)

// Parse reads a policy from YAML (or JSON), refusing unknown fields as
// Connaisseur does (and, unlike encoding/json, field names spelt in another
// case), and validates it. Version is set to the hex SHA-256 of
// data. All validation problems are reported together, each as a
// *FieldError naming the field (errors.As finds them).
func Parse(data []byte) (*Policy, error) {
	// Field names are checked first, on the generic document, so that every
	// unknown or misspelt field is reported with its path.
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	var c checker
	checkFields(doc, reflect.TypeFor[Policy](), "", &c)
	if len(c.errs) > 0 {
		return nil, fmt.Errorf("parse policy: %w", errors.Join(c.errs...))
	}
	var p Policy
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	sum := sha256.Sum256(data)
	p.Version = hex.EncodeToString(sum[:])
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("invalid policy: %w", err)
	}
	return &p, nil
}

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path) // #nosec G304 -- the operator's --policy path; reading it is the point.
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", path, err)
	}
	return p, nil
}
