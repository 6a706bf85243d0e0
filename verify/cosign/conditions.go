package cosign

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
)

// Conditions are CEL (https://cel.dev, cel.dev/cel-go) expressions with
// the standard library only: comparisons, && || !, arithmetic, `in`, size,
// contains / startsWith / endsWith, matches (RE2), has(), the macros all,
// exists, exists_one, map and filter, and the type conversions. No
// extension library, nothing that reads the clock or the world: a
// condition's answer depends on the signed statement alone. Its variables:
//
//	predicate      dyn                     the statement's predicate, as JSON
//	predicateType  string                  the statement's predicate type URI
//	subject        list(map(string, dyn))  the statement's subjects: name, digest
//
// JSON numbers are doubles; int and double compare as numbers. Every
// condition must have type bool when checked at load (write
// `predicate.flag == true`, not `predicate.flag`).
const (
	// conditionCostLimit bounds one evaluation (CEL's cost units, about
	// one per operation and per element visited): a comprehension over a
	// huge SBOM stops with an error, which denies, instead of running on.
	conditionCostLimit = 1_000_000
	// maxConditionLen bounds a condition's source, in code points.
	maxConditionLen = 4096
	// maxRegexProgramSize bounds the compiled size of a matches() pattern
	// (RE2: linear time in the input, but the program is built per call for
	// a pattern that is not a constant).
	maxRegexProgramSize = 10_000
)

var conditionEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("predicate", cel.DynType),
		cel.Variable("predicateType", cel.StringType),
		cel.Variable("subject", cel.ListType(cel.MapType(cel.StringType, cel.DynType))),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(maxConditionLen),
		cel.RegexProgramSizeLimit(maxRegexProgramSize),
	)
})

// condition is one compiled condition. A cel.Program is safe for
// concurrent use.
type condition struct {
	expr string
	prg  cel.Program
}

func compileCondition(expr string) (condition, error) {
	env, err := conditionEnv()
	if err != nil {
		return condition{}, fmt.Errorf("condition language: %w", err)
	}
	if strings.TrimSpace(expr) == "" {
		return condition{}, errors.New("must not be empty")
	}
	if n := utf8.RuneCountInString(expr); n > maxConditionLen {
		return condition{}, fmt.Errorf("is %d characters long, at most %d allowed", n, maxConditionLen)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return condition{}, fmt.Errorf("%q is not a valid condition: %s", expr, issueList(iss))
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) {
		return condition{}, fmt.Errorf("%q has type %s, want bool (compare the value, e.g. `predicate.x == true`)", expr, t)
	}
	prg, err := env.Program(ast,
		cel.CostLimit(conditionCostLimit),
		cel.InterruptCheckFrequency(100),
		// Constant regular expressions are compiled here, once, and a bad
		// one is an error now rather than at every evaluation.
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return condition{}, fmt.Errorf("%q: %w", expr, err)
	}
	return condition{expr: expr, prg: prg}, nil
}

// issueList puts CEL's issues on one line: message and column each.
func issueList(iss *cel.Issues) string {
	var out []string
	for _, e := range iss.Errors() {
		out = append(out, fmt.Sprintf("%s (column %d)", e.Message, e.Location.Column()+1))
	}
	return strings.Join(out, "; ")
}

// statement is what the conditions see of a verified in-toto statement.
type statement struct {
	PredicateType string
	// Predicate is the predicate as encoding/json decodes it into an any:
	// map[string]any, []any, string, float64, bool or nil.
	Predicate any
	Subject   []statementSubject
}

// statementSubject is one subject of an in-toto statement.
type statementSubject struct {
	Name   string
	Digest map[string]string
}

// conditionError says which condition did not hold and why.
type conditionError struct {
	Expr string
	// Err is the evaluation error (a missing field, the cost limit), or nil
	// when the condition evaluated to false.
	Err error
}

func (e *conditionError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("condition %q is false", e.Expr)
	}
	return fmt.Sprintf("condition %q failed: %v", e.Expr, e.Err)
}

func (e *conditionError) Unwrap() error { return e.Err }

// check evaluates the conditions, in order, on st: nil when all hold, else
// a *conditionError for the first that does not.
func (c *attestation) check(ctx context.Context, st statement) error {
	if len(c.conditions) == 0 {
		return nil
	}
	subjects := make([]any, len(st.Subject))
	for i, s := range st.Subject {
		digest := make(map[string]any, len(s.Digest))
		for k, v := range s.Digest {
			digest[k] = v
		}
		subjects[i] = map[string]any{"name": s.Name, "digest": digest}
	}
	vars := map[string]any{
		"predicate":     st.Predicate,
		"predicateType": st.PredicateType,
		"subject":       subjects,
	}
	for _, cond := range c.conditions {
		out, _, err := cond.prg.ContextEval(ctx, vars)
		if err != nil {
			return &conditionError{Expr: cond.expr, Err: err}
		}
		ok, isBool := out.Value().(bool)
		if !isBool {
			return &conditionError{Expr: cond.expr, Err: fmt.Errorf("result %v is not a bool", out)}
		}
		if !ok {
			return &conditionError{Expr: cond.expr}
		}
	}
	return nil
}
