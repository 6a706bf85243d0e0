package policy

import (
	"fmt"
	"strings"
)

// class compiles [...] starting at its '['. See glob.go for the forms.
func (g *globParser) class() error {
	open := g.i
	end := strings.IndexByte(g.p[open:], ']')
	if end < 0 {
		return fmt.Errorf("'[' at position %d is never closed", open+1)
	}
	body := g.p[open+1 : open+end]
	g.i = open + end + 1
	set, err := classSet(body)
	if err != nil {
		return fmt.Errorf("class %q at position %d: %w", g.p[open:g.i], open+1, err)
	}
	g.emit(globInst{op: opClass, set: set})
	return nil
}

// classSet is the set of bytes a class body (between the brackets) stands for.
func classSet(body string) (*byteSet, error) {
	negate := strings.HasPrefix(body, "!")
	if negate {
		body = body[1:]
	}
	if body == "" {
		return nil, fmt.Errorf("is empty")
	}
	for i := 0; i < len(body); i++ {
		if c := body[i]; !isClassChar(c) {
			return nil, fmt.Errorf("character %q cannot be in a class (letters, digits, '.', '_', '-' and '+' can)", c)
		}
	}
	set := &byteSet{}
	switch {
	case len(body) >= 2 && body[1] == '-':
		// A range, as Connaisseur's glob library reads one: the first
		// character followed by '-'; the class must end after it.
		if len(body) == 2 {
			return nil, fmt.Errorf("reads as an unfinished range in Connaisseur's glob library; to list '-', put it first")
		}
		if len(body) != 3 {
			return nil, fmt.Errorf("holds one range or a list of characters, not both (Connaisseur's glob library refuses [a-z0-9] too); write alternatives such as {[a-z],[0-9]}")
		}
		lo, hi := body[0], body[2]
		if kind(lo) == 0 || kind(lo) != kind(hi) || lo > hi {
			return nil, fmt.Errorf("range %c-%c must run up between two digits or two letters of one case, as [0-9] or [a-f]", lo, hi)
		}
		for c := lo; c <= hi; c++ {
			set.add(c)
		}
	default:
		// A list. Connaisseur's library reads a '-' in it as itself, so
		// [ab-d] is a, b, '-' and d: refuse the one spelling where that
		// surprises, a '-' between two characters.
		if i := strings.IndexByte(body[1:], '-'); i >= 0 && i+2 < len(body) {
			return nil, fmt.Errorf("'-' inside a list is the character '-' in Connaisseur's glob library (a range is only [x-y] alone); put '-' first or last, or write alternatives such as {a,[b-d]}")
		}
		for i := 0; i < len(body); i++ {
			set.add(body[i])
		}
	}
	if negate {
		set.invert()
	}
	return set, nil
}

func isClassChar(c byte) bool {
	return kind(c) != 0 || c == '.' || c == '_' || c == '-' || c == '+'
}

// kind is 1 for a digit, 2 for a lower-case letter, 3 for an upper-case
// one, else 0.
func kind(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return 1
	case c >= 'a' && c <= 'z':
		return 2
	case c >= 'A' && c <= 'Z':
		return 3
	}
	return 0
}

// match runs the program over all of s: a Pike VM without captures, so
// every instruction is visited at most once per byte.
func (prog globProg) match(s string) bool {
	cur, next := newThreadSet(len(prog)), newThreadSet(len(prog))
	cur.add(prog, 0)
	for i := 0; i < len(s) && len(cur.dense) > 0; i++ {
		c := s[i]
		next.clear()
		for _, pc := range cur.dense {
			in := &prog[pc]
			if in.op == opAny || in.op == opByte && in.b == c || in.op == opClass && in.set.has(c) {
				next.add(prog, pc+1)
			}
		}
		cur, next = next, cur
	}
	for _, pc := range cur.dense {
		if prog[pc].op == opMatch {
			return true
		}
	}
	return false
}

// threadSet is the set of instructions the VM is at: dense those that
// read a byte (or match), in insertion order, seen every one visited.
type threadSet struct {
	dense, seen []int
	member      []bool
}

func newThreadSet(n int) *threadSet {
	return &threadSet{dense: make([]int, 0, n), seen: make([]int, 0, n), member: make([]bool, n)}
}

func (t *threadSet) clear() {
	for _, pc := range t.seen {
		t.member[pc] = false
	}
	t.dense, t.seen = t.dense[:0], t.seen[:0]
}

// add adds pc, following jumps and splits to the instructions that read a
// byte (or match).
func (t *threadSet) add(prog globProg, pc int) {
	if t.member[pc] {
		return
	}
	t.member[pc] = true
	t.seen = append(t.seen, pc)
	switch in := prog[pc]; in.op {
	case opJmp:
		t.add(prog, in.x)
	case opSplit:
		t.add(prog, in.x)
		t.add(prog, in.y)
	default:
		t.dense = append(t.dense, pc)
	}
}
