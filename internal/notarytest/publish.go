package notarytest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/theupdateframework/notary/client"
	"github.com/theupdateframework/notary/client/changelist"
	"github.com/theupdateframework/notary/cryptoservice"
	"github.com/theupdateframework/notary/passphrase"
	store "github.com/theupdateframework/notary/storage"
	"github.com/theupdateframework/notary/trustmanager"
	"github.com/theupdateframework/notary/trustpinning"
	"github.com/theupdateframework/notary/tuf/data"
	"github.com/theupdateframework/notary/tuf/utils"
)

// KeyAlgo is the kind of a repository's root key.
type KeyAlgo string

const (
	ECDSA KeyAlgo = data.ECDSAKey // P-256, docker's default
	RSA   KeyAlgo = data.RSAKey   // 2048 bits
)

// Repo is one GUN's trust data, published by a notary client whose keys
// live in memory only. Its methods publish at once, as `docker trust sign`
// does.
type Repo struct {
	GUN string

	t       testing.TB
	repo    client.Repository
	cs      *cryptoservice.CryptoService
	rootKey crypto.PublicKey
}

// NewRepo creates gun's root key (of kind algo), initialises the trust
// data with a server-managed snapshot key (docker's setup) and publishes
// it: root, empty targets, snapshot and timestamp.
func (s *Server) NewRepo(t testing.TB, gun string, algo KeyAlgo) *Repo {
	t.Helper()
	g := data.GUN(gun)
	cs := cryptoservice.NewCryptoService(trustmanager.NewKeyMemoryStore(passphrase.ConstantRetriever("notarytest")))
	rs, err := store.NewNotaryServerStore(s.URL, g, &http.Transport{})
	if err != nil {
		t.Fatalf("notary remote store: %v", err)
	}
	// The publishing client trusts on first use: it is the publisher.
	repo, err := client.NewRepository(g, s.URL, rs, store.NewMemoryStore(nil), trustpinning.TrustPinConfig{}, cs, changelist.NewMemChangelist())
	if err != nil {
		t.Fatalf("notary repository %s: %v", gun, err)
	}
	var rootID string
	switch algo {
	case ECDSA:
		pub, err := cs.Create(data.CanonicalRootRole, g, data.ECDSAKey)
		if err != nil {
			t.Fatalf("root key: %v", err)
		}
		rootID = pub.ID()
	case RSA:
		// notary's crypto service only imports RSA keys.
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatalf("root key: %v", err)
		}
		priv, err := utils.RSAToPrivateKey(k)
		if err != nil {
			t.Fatalf("root key: %v", err)
		}
		if err := cs.AddKey(data.CanonicalRootRole, g, priv); err != nil {
			t.Fatalf("root key: %v", err)
		}
		rootID = priv.ID()
	default:
		t.Fatalf("unknown root key algorithm %q", algo)
	}
	priv, _, err := cs.GetPrivateKey(rootID)
	if err != nil {
		t.Fatalf("root key: %v", err)
	}
	r := &Repo{GUN: gun, t: t, repo: repo, cs: cs, rootKey: priv.CryptoSigner().Public()}
	if err := repo.Initialize([]string{rootID}, data.CanonicalSnapshotRole); err != nil {
		t.Fatalf("initialise trust data of %s: %v", gun, err)
	}
	r.publish()
	return r
}

// RootKeyPEM is the root public key, as a Connaisseur notaryv1 trust root
// takes it (what `openssl ec -pubout` prints for docker's root key).
func (r *Repo) RootKeyPEM() string {
	r.t.Helper()
	der, err := x509.MarshalPKIXPublicKey(r.rootKey)
	if err != nil {
		r.t.Fatalf("root key: %v", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// AddDelegation creates a key for the delegation role "targets/<name>",
// delegates all paths to it, and publishes.
func (r *Repo) AddDelegation(name string) {
	r.t.Helper()
	role := roleName(name)
	pub, err := r.cs.Create(role, data.GUN(r.GUN), data.ECDSAKey)
	if err != nil {
		r.t.Fatalf("delegation key: %v", err)
	}
	if err := r.repo.AddDelegation(role, []data.PublicKey{pub}, []string{""}); err != nil {
		r.t.Fatalf("add delegation %s: %v", role, err)
	}
	r.publish()
}

// Sign makes tag a target for digest in each of roles ("targets", or a
// delegation name such as "releases"; default "targets") and publishes.
// The target's length is the manifest's size in the registry the GUN
// names, as docker records it.
func (r *Repo) Sign(tag, digest string, roles ...string) {
	r.t.Helper()
	algo, hexSum, _ := strings.Cut(digest, ":")
	sum, err := hex.DecodeString(hexSum)
	if err != nil || algo != "sha256" {
		r.t.Fatalf("digest %q: want sha256:<hex>", digest)
	}
	ref, err := name.NewDigest(r.GUN+"@"+digest, name.Insecure)
	if err != nil {
		r.t.Fatalf("reference: %v", err)
	}
	desc, err := remote.Head(ref)
	if err != nil {
		r.t.Fatalf("manifest %s: %v", ref, err)
	}
	target := &client.Target{Name: tag, Hashes: data.Hashes{"sha256": sum}, Length: desc.Size}
	names := make([]data.RoleName, 0, len(roles))
	for _, n := range roles {
		if n == data.CanonicalTargetsRole.String() {
			names = append(names, data.CanonicalTargetsRole)
		} else {
			names = append(names, roleName(n))
		}
	}
	if err := r.repo.AddTarget(target, names...); err != nil {
		r.t.Fatalf("add target %s: %v", tag, err)
	}
	r.publish()
}

func (r *Repo) publish() {
	r.t.Helper()
	if err := r.repo.Publish(); err != nil {
		r.t.Fatalf("publish trust data of %s: %v", r.GUN, err)
	}
}

func roleName(name string) data.RoleName {
	if strings.HasPrefix(name, "targets/") {
		return data.RoleName(name)
	}
	return data.RoleName("targets/" + name)
}
