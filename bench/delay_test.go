package bench

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// delayProxy forwards TCP connections on 127.0.0.1 to target and adds rtt/2
// to every chunk of data in each direction, so every request-response pays
// rtt. A new connection also pays rtt before its first byte gets through,
// as a TCP handshake over such a link would. It models a registry rtt away
// (plain HTTP: no TLS handshake is modelled).
type delayProxy struct {
	ln     net.Listener
	target string
	rttNS  atomic.Int64

	mu    sync.Mutex
	conns []net.Conn
}

func startDelayProxy(t testing.TB, target string, rtt time.Duration) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{ln: ln, target: target}
	p.setRTT(rtt)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *delayProxy) addr() string { return p.ln.Addr().String() }

// setRTT changes the added round-trip time of what is sent from now on.
func (p *delayProxy) setRTT(rtt time.Duration) { p.rttNS.Store(int64(rtt)) }

func (p *delayProxy) rtt() time.Duration { return time.Duration(p.rttNS.Load()) }

func (p *delayProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

func (p *delayProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		accepted := time.Now()
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		// Client to registry: the first byte arrives as it would after a
		// handshake (one rtt) and a one-way trip (half of one).
		rtt := p.rtt()
		go p.pipe(u, c, accepted.Add(rtt+rtt/2))
		go p.pipe(c, u, time.Time{})
	}
}

type chunk struct {
	b  []byte
	at time.Time // when it may be written
}

// pipe copies src to dst, each chunk rtt/2 after it was read, and none
// before notBefore.
func (p *delayProxy) pipe(dst, src net.Conn, notBefore time.Time) {
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				at := time.Now().Add(p.rtt() / 2)
				if at.Before(notBefore) {
					at = notBefore
				}
				q <- chunk{buf[:n], at}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		if d := time.Until(c.at); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.Write(c.b); err != nil {
			break
		}
	}
	// Half-close so the other side sees EOF, then drain.
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	go io.Copy(io.Discard, src)
}
