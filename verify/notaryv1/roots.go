package notaryv1

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/theupdateframework/notary/trustpinning"
	"github.com/theupdateframework/notary/tuf/data"
	"github.com/theupdateframework/notary/tuf/signed"
	"github.com/theupdateframework/notary/tuf/utils"
)

// trustRoot is one pinned root public key of the policy. In root.json a
// root key is an X.509 certificate (of the repository's GUN) holding it.
type trustRoot struct {
	name string
	key  crypto.PublicKey // *ecdsa.PublicKey or *rsa.PublicKey
}

func (r *trustRoot) holds(cert *x509.Certificate) bool {
	k, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(r.key)
}

// pinning turns the policy's root public keys into notary's trust pinning.
// notary pins certificate IDs, not keys, and the certificates are only
// known once root.json arrives; so every root.json the server sends is
// looked at first, and the IDs of its root certificates that hold a pinned
// key are added to the pinned set before notary validates that root.
// With DisableTOFU and no matching certificate, notary refuses the root.
type pinning struct {
	gun   string
	roots []*trustRoot
	cfg   trustpinning.TrustPinConfig

	mu  sync.Mutex
	ids map[string]bool
}

func newPinning(gun string, roots []*trustRoot) *pinning {
	return &pinning{
		gun:   gun,
		roots: roots,
		// The map is shared with the copy notary gets, so IDs added by
		// observe are seen by the checks notary makes afterwards.
		cfg: trustpinning.TrustPinConfig{Certs: map[string][]string{gun: {}}, DisableTOFU: true},
		ids: map[string]bool{},
	}
}

// observe adds the pinned certificates of a downloaded root.json. Anything
// it cannot read is left for notary to reject.
func (p *pinning) observe(raw []byte) {
	var s data.Signed
	if json.Unmarshal(raw, &s) != nil {
		return
	}
	root, err := data.RootFromSigned(&s)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range rootKeyIDs(root) {
		k, ok := root.Signed.Keys[id]
		if !ok {
			continue
		}
		leaf, ints, ok := certBundle(k)
		if !ok || !p.pinned(leaf) {
			continue
		}
		// The ID notary's certsCheck computes for this certificate.
		ck, err := utils.CertBundleToKey(leaf, ints)
		if err != nil || p.ids[ck.ID()] {
			continue
		}
		p.ids[ck.ID()] = true
		p.cfg.Certs[p.gun] = append(p.cfg.Certs[p.gun], ck.ID())
	}
}

func (p *pinning) pinned(cert *x509.Certificate) bool {
	for _, r := range p.roots {
		if r.holds(cert) {
			return true
		}
	}
	return false
}

// rootKeyIDs lists the keys of the root role (notary checks it is there;
// this does not rely on it).
func rootKeyIDs(root *data.SignedRoot) []string {
	if r := root.Signed.Roles[data.CanonicalRootRole]; r != nil {
		return r.KeyIDs
	}
	return nil
}

// certBundle returns the leaf and intermediates of a root key, as notary
// reads them (a PEM bundle, leaf first).
func certBundle(k data.PublicKey) (*x509.Certificate, []*x509.Certificate, bool) {
	switch k.Algorithm() {
	case data.ECDSAx509Key, data.RSAx509Key:
	default:
		return nil, nil, false
	}
	certs, err := utils.LoadCertBundleFromPEM(k.Public())
	if err != nil {
		return nil, nil, false
	}
	leaves := utils.GetLeafCerts(certs)
	if len(leaves) != 1 || certs[0].IsCA {
		return nil, nil, false
	}
	return leaves[0], utils.GetIntermediateCerts(certs), true
}

// checkRootKeys checks that every selected root key signed the root
// metadata in force. notary's pinning already held for a root that came
// from the server in this verification; a root from the cache was pinned
// when it arrived, perhaps for another rule's roots, so this check is what
// binds the answer to this rule's roots. It is also Connaisseur's meaning
// of trustRoot "*": every root key must have signed.
func checkRootKeys(root *data.SignedRoot, gun string, roots []*trustRoot) string {
	if root == nil {
		return fmt.Sprintf("no root metadata for %s", gun)
	}
	s, err := root.ToSigned()
	if err != nil {
		return fmt.Sprintf("root metadata of %s: %v", gun, err)
	}
	for _, r := range roots {
		if !signedBy(root, s, r) {
			return fmt.Sprintf("root key not pinned: the root metadata of %s is not signed by trust root %q", gun, r.name)
		}
	}
	return ""
}

// signedBy reports whether a root-role certificate holding r's key has a
// valid signature on s.
func signedBy(root *data.SignedRoot, s *data.Signed, r *trustRoot) bool {
	for _, id := range rootKeyIDs(root) {
		k, ok := root.Signed.Keys[id]
		if !ok {
			continue
		}
		leaf, _, ok := certBundle(k)
		if !ok || !r.holds(leaf) {
			continue
		}
		one := data.BaseRole{Name: data.CanonicalRootRole, Keys: map[string]data.PublicKey{id: k}, Threshold: 1}
		if signed.VerifySignatures(s, one) == nil {
			return true
		}
	}
	return false
}
