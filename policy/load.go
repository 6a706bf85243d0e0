package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"reflect"

	"sigs.k8s.io/yaml"
)

// Parse is ParseWith(data, nil): the policy's shape is checked (Validate),
// not what its validators' settings say. A policy that is to be used is
// read with ParseWith(data, validators.Check) (package verify/validators).
func Parse(data []byte) (*Policy, error) { return ParseWith(data, nil) }

// ParseWith reads a policy from YAML (or JSON), refusing unknown fields as
// Connaisseur does (and, unlike encoding/json, field names spelt in another
// case), sets Version to the hex SHA-256 of data, and checks it with check
// (nil: Validate alone). All problems are reported together, each as a
// *FieldError naming the field (errors.As finds them).
func ParseWith(data []byte, check func(*Policy) error) (*Policy, error) {
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
	var fields Errors
	checkFields(doc, reflect.TypeFor[Policy](), "", &fields)
	if err := fields.Err(); err != nil {
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	var p Policy
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	sum := sha256.Sum256(data)
	p.Version = hex.EncodeToString(sum[:])
	if check == nil {
		check = validate
	}
	if err := check(&p); err != nil {
		return nil, fmt.Errorf("invalid policy: %w", err)
	}
	return &p, nil
}

func validate(p *Policy) error { return p.Validate() }

// Load is LoadWith(path, nil): see Parse.
func Load(path string) (*Policy, error) { return LoadWith(path, nil) }

// LoadWith reads the policy file at path and parses it with ParseWith.
func LoadWith(path string, check func(*Policy) error) (*Policy, error) {
	data, err := os.ReadFile(path) // #nosec G304 -- the operator's --policy path; reading it is the point.
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	p, err := ParseWith(data, check)
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", path, err)
	}
	return p, nil
}
