package policy

import "fmt"

// Classes and alternatives, read as Connaisseur's glob library
// (github.com/gobwas/glob, compiled without separators) reads them:
//
//   - [abc] one of the characters listed, [!abc] any one character but
//     those ('/' included), [a-f] one in the range, [!a-f] any other;
//   - {a,b*,c} any one of the alternatives, each a pattern of its own
//     (classes, wildcards and nested alternatives allowed), possibly empty.
//
// Where that library accepts something surprising, the pattern is refused
// rather than read differently: a class mixing a range and a list
// ([a-z0-9] is an error there too; [ab-d] is a, b, '-' and d there), a '/'
// inside a class or alternatives (its rule precedence splits patterns on
// '/', and fails on an alternative that holds one), unbalanced brackets or
// braces (it reads a stray '}' as text and an unclosed '{' as closed).

// globProg is a compiled pattern with classes or alternatives: a small
// NFA, run by simulation, so matching is O(len(prog)*len(image)) whatever
// the pattern, like globMatch for '*' and '?' alone.
type globProg []globInst

type globInst struct {
	op   globOp
	b    byte     // opByte
	set  *byteSet // opClass
	x, y int      // opSplit, opJmp: the next instructions
}

type globOp uint8

const (
	opByte  globOp = iota // one given byte
	opAny                 // any one byte ('?', and '*' looping)
	opClass               // one byte of set
	opSplit               // go on at x and at y
	opJmp                 // go on at x
	opMatch               // the whole pattern matched
)

type byteSet [4]uint64

func (s *byteSet) add(c byte)      { s[c/64] |= 1 << (c % 64) }
func (s *byteSet) has(c byte) bool { return s[c/64]&(1<<(c%64)) != 0 }
func (s *byteSet) invert() {
	for i := range s {
		s[i] = ^s[i]
	}
}

// globParser reads one pattern into a program.
type globParser struct {
	p    string
	i    int
	prog globProg
}

// compileGlob compiles pattern p, or says what is wrong with its classes
// and alternatives.
func compileGlob(p string) (globProg, error) {
	g := &globParser{p: p}
	if err := g.seq(0); err != nil {
		return nil, err
	}
	g.emit(globInst{op: opMatch})
	return g.prog, nil
}

func (g *globParser) emit(in globInst) int {
	g.prog = append(g.prog, in)
	return len(g.prog) - 1
}

// seq compiles characters up to the end of the pattern or, inside depth
// levels of alternatives, up to the ',' or '}' that ends one.
func (g *globParser) seq(depth int) error {
	for g.i < len(g.p) {
		c := g.p[g.i]
		switch {
		case depth > 0 && (c == ',' || c == '}'):
			return nil
		case c == '}':
			return fmt.Errorf("'}' at position %d closes no '{'", g.i+1)
		case c == ',':
			return fmt.Errorf("',' at position %d is outside {...}", g.i+1)
		case c == ']':
			return fmt.Errorf("']' at position %d closes no '['", g.i+1)
		case c == '!':
			return fmt.Errorf("'!' at position %d is outside [...] (it negates a class as its first character, [!...])", g.i+1)
		case c == '/' && depth > 0:
			return fmt.Errorf("'/' at position %d is inside {...}; alternatives cannot span path components (write one rule per path)", g.i+1)
		case c == '[':
			if err := g.class(); err != nil {
				return err
			}
			continue
		case c == '{':
			if err := g.alternatives(depth + 1); err != nil {
				return err
			}
			continue
		case c == '*':
			// L: split L+1, end; L+1: any; jmp L
			l := g.emit(globInst{op: opSplit})
			g.emit(globInst{op: opAny})
			g.emit(globInst{op: opJmp, x: l})
			g.prog[l].x, g.prog[l].y = l+1, len(g.prog)
		case c == '?':
			g.emit(globInst{op: opAny})
		default:
			g.emit(globInst{op: opByte, b: c})
		}
		g.i++
	}
	return nil // alternatives says if a '{' is left open
}

// alternatives compiles {a,b,...} starting at its '{'.
func (g *globParser) alternatives(depth int) error {
	open := g.i
	g.i++
	var jumps []int // each alternative's jump to the end
	for {
		split := g.emit(globInst{op: opSplit})
		g.prog[split].x = split + 1
		if err := g.seq(depth); err != nil {
			return err
		}
		if g.i >= len(g.p) {
			return fmt.Errorf("'{' at position %d is never closed", open+1)
		}
		jumps = append(jumps, g.emit(globInst{op: opJmp}))
		// The split either enters this alternative or tries the next.
		g.prog[split].y = len(g.prog)
		if g.p[g.i] == '}' {
			g.i++
			// The last split's other way leads to no alternative: make
			// it fail by pointing at an impossible instruction.
			g.prog[split].y = g.emit(globInst{op: opClass, set: &byteSet{}})
			break
		}
		g.i++ // ','
	}
	for _, j := range jumps {
		g.prog[j].x = len(g.prog)
	}
	return nil
}
