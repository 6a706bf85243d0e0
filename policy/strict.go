package policy

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// checkFields reports every key of doc (a decoded JSON document) that is not,
// spelled exactly so, a field of type t, and every value of a type the
// field cannot take. encoding/json, under yaml.UnmarshalStrict, matches
// field names case-insensitively, so "trustroot" would quietly pass for
// "trustRoot"; a typo there is exactly what a strict loader should catch.
// And its type errors name Go types ("cannot unmarshal string into Go
// struct field Rule.policy.namespaces of type []string"), not the field's
// path, as every other policy error does.
func checkFields(doc any, t reflect.Type, path string, c *Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if doc == nil || t == rawType {
		return // null leaves the zero value; alerting takes anything
	}
	switch t.Kind() {
	case reflect.Struct:
		checkObject(doc, t, path, c)
	case reflect.Slice:
		arr, ok := doc.([]any)
		if !ok {
			typeError(c, path, "a list", doc)
			return
		}
		for i, e := range arr {
			checkFields(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), c)
		}
	case reflect.String:
		// A number or boolean is taken as its text, as YAML loaders do
		// (Connaisseur's too): "name: 2024" is the name "2024".
		switch doc.(type) {
		case []any, map[string]any:
			typeError(c, path, "a string", doc)
		}
	case reflect.Bool:
		if _, ok := doc.(bool); !ok {
			typeError(c, path, "true or false", doc)
		}
	case reflect.Int:
		f, ok := doc.(float64)
		switch {
		case !ok || f != math.Trunc(f):
			typeError(c, path, "a whole number", doc)
		case math.Abs(f) > math.MaxInt32:
			c.Add(path, "%g is out of range", f)
		}
	}
}

// rawType is a field kept as written (Connaisseur's alerting section).
var rawType = reflect.TypeFor[json.RawMessage]()

// checkObject checks doc against the struct type t: it must be an object
// (Host may also be a string, notaryv1's server) with only t's fields.
func checkObject(doc any, t reflect.Type, path string, c *Errors) {
	obj, ok := doc.(map[string]any)
	if !ok {
		if _, isString := doc.(string); isString && t == reflect.TypeFor[Host]() {
			return
		}
		want := "an object (a mapping of fields)"
		if t == reflect.TypeFor[Host]() {
			want = "a notary server (a string) or an object"
		}
		typeError(c, path, want, doc)
		return
	}
	fields := jsonFields(t)
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		f, known := fields[k]
		if !known {
			msg := fmt.Sprintf("unknown field %q", k)
			for name := range fields {
				if strings.EqualFold(name, k) {
					msg += fmt.Sprintf(" (did you mean %q?)", name)
				}
			}
			c.Add(path, "%s", msg)
			continue
		}
		checkFields(obj[k], f.Type, Path(path, k), c)
	}
}

// typeError reports that the value at path is not of the type wanted.
// A string's content is not repeated: it may be a password.
func typeError(c *Errors, path, want string, got any) {
	var what string
	switch v := got.(type) {
	case string:
		what = "a string"
	case float64:
		what = "the number " + strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		what = strconv.FormatBool(v)
	case []any:
		what = "a list"
	default:
		what = "an object"
	}
	if path == "" {
		c.Add("", "the policy must be an object with validators and policy, not %s", what)
		return
	}
	c.Add(path, "must be %s, not %s", want, what)
}

// jsonFields maps the JSON names of t's exported fields to the fields.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}
