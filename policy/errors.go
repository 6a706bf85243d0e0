package policy

import (
	"errors"
	"fmt"
)

// FieldError is one problem in a policy, located by its field path in the
// file, e.g. "policy[2].with.trustRoot".
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg // the top level of the file
	}
	return e.Path + ": " + e.Msg
}

// Errors collects every problem of a policy instead of stopping at the
// first, so that one edit-and-reload round fixes a file. The zero value is
// ready to use. Validate and the validators' Sections report into one.
type Errors struct{ errs []error }

// Add records a *FieldError at path.
func (e *Errors) Add(path, format string, args ...any) {
	e.errs = append(e.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Len is the number of problems recorded.
func (e *Errors) Len() int { return len(e.errs) }

// Err joins the problems recorded, in order, or is nil when there are none.
func (e *Errors) Err() error { return errors.Join(e.errs...) }

// Path is the path of field inside the object at parent:
// Path("validators[1]", "cert") is "validators[1].cert", and Path("", "cert")
// is "cert", for a validator checked on its own.
func Path(parent, field string) string {
	if parent == "" {
		return field
	}
	return parent + "." + field
}
