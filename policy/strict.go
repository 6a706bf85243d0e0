package policy

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// checkFields reports every key of doc (a decoded JSON document) that is not,
// spelled exactly so, a field of type t. encoding/json, under
// yaml.UnmarshalStrict, matches field names case-insensitively, so
// "trustroot" would quietly pass for "trustRoot"; a typo there is exactly
// what a strict loader should catch. It also names where the key is.
// Values of the wrong type are left to the decoder.
func checkFields(doc any, t reflect.Type, path string, c *Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := doc.(map[string]any)
		if !ok {
			return // e.g. a Host written as a string
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
			sub := k
			if path != "" {
				sub = path + "." + k
			}
			checkFields(obj[k], f.Type, sub, c)
		}
	case reflect.Slice:
		arr, ok := doc.([]any)
		if !ok {
			return
		}
		for i, e := range arr {
			checkFields(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), c)
		}
	}
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
