// Package policy answers one question: which rule, and which validator,
// apply to this image in this namespace?
//
// It holds the policy file's wire form (the tagged types here, in the shape
// of Connaisseur's `validators` and `policy` sections, so one configuration
// can serve an admission webhook and this node gate), reads it strictly,
// checks its shape (names, references, types, modes, patterns, which fields
// each validator type takes) and matches images against its rules (see
// Matcher). It must not know what a validator's settings mean: keys,
// keyless identities, Sigstore material, notation trust stores and
// attestation conditions are checked and compiled by the validator's own
// package under verify/, through a Section given to Validate. Nor does it
// know NRI, registries or signatures.
package policy

import "encoding/json"

// Mode says what happens when verification fails.
type Mode string

const (
	// ModeEnforce denies the container. It is the default.
	ModeEnforce Mode = "enforce"
	// ModeAudit allows the container but reports a would-be denial.
	ModeAudit Mode = "audit"
)

// Validator types understood by this build.
const (
	TypeStatic   = "static"
	TypeCosign   = "cosign"
	TypeNotaryV1 = "notaryv1"
	TypeNotation = "notation"
)

// AllTrustRoots is the trustRoot value that selects every root of a validator.
const AllTrustRoots = "*"

// DefaultName is the validator a rule uses when it names none, and the trust
// root a rule uses when it names none (Connaisseur's convention).
const DefaultName = "default"

// Policy is a policy file as read: its wire form. Nothing derived from its
// settings is kept in it; Matcher holds the compiled rule patterns, and each
// validator compiles its own section (see Section).
type Policy struct {
	// Mode is the global default mode; a rule may override it.
	Mode       Mode        `json:"mode,omitempty"`
	Validators []Validator `json:"validators"`
	Rules      []Rule      `json:"policy"`
	// Alerting is Connaisseur's alerting section (webhooks to Slack,
	// Opsgenie, ...). It is accepted so that a Connaisseur file loads, and
	// not used: at the node, refusals are Kubernetes Events, metrics and
	// the audit log (a warning says so).
	Alerting json.RawMessage `json:"alerting,omitempty"`

	// Version identifies the policy content (hex SHA-256 of the file bytes).
	// Verdict caches key on it so that a reload invalidates them.
	Version string `json:"-"`
}

// Validator is one named way of verifying an image.
type Validator struct {
	Name string `json:"name"`
	Type string `json:"type"`

	// static
	Approve *bool `json:"approve,omitempty"`

	// cosign, notaryv1 and notation
	TrustRoots []TrustRoot `json:"trustRoots,omitempty"`
	// Host holds the Sigstore material of keyless cosign roots (Fulcio CA
	// chain, Rekor and CT log keys, inline PEM) or the notary server
	// (notaryv1). Key-based cosign roots do not use it.
	Host *Host `json:"host,omitempty"`
	// TrustedRoot (cosign) is the absolute path of a Sigstore
	// trusted_root.json holding more of the same material, read at load
	// (extension; never fetched from the network).
	TrustedRoot string `json:"trustedRoot,omitempty"`

	Auth *Auth `json:"auth,omitempty"`
	// Cert is a PEM CA certificate for a registry with a private CA.
	Cert string `json:"cert,omitempty"`
}

// TrustRoot is one named public key or keyless (Fulcio) identity.
type TrustRoot struct {
	Name string `json:"name"`
	// Key is an inline PEM public key: ECDSA P-256/P-384, RSA >= 2048 bits
	// or Ed25519.
	Key string `json:"key,omitempty"`
	// Keyless is a Fulcio certificate identity, instead of Key.
	Keyless *Keyless `json:"keyless,omitempty"`
	// Cert and TSCert are notation's trust root fields: the trust store
	// (PEM CA certificates, or self-signed signing certificates) and the
	// timestamping authorities' root certificates (see verify/notation).
	// They are errors on cosign and notaryv1 roots.
	Cert   string `json:"cert,omitempty"`
	TSCert string `json:"tsCert,omitempty"`
}

// Keyless describes a Fulcio certificate identity: the OIDC issuer and the
// subject (the certificate's e-mail or URI SAN), each exact or a regular
// expression (anchored: it must match the whole value; see verify/cosign).
type Keyless struct {
	Issuer       string `json:"issuer,omitempty"`
	IssuerRegex  string `json:"issuerRegex,omitempty"`
	Subject      string `json:"subject,omitempty"`
	SubjectRegex string `json:"subjectRegex,omitempty"`
}

// Host is Connaisseur's cosign `host` block or notary server URL holder.
type Host struct {
	Rekor       string `json:"rekor,omitempty"`
	RekorPubkey string `json:"rekorPubkey,omitempty"`
	FulcioCert  string `json:"fulcioCert,omitempty"`
	CTLogPubkey string `json:"ctLogPubkey,omitempty"`

	// Server is the notary server when `host` is written as a plain string
	// (Connaisseur's notaryv1 form). It is wire form, not derived state:
	// the string shape has no field name, so UnmarshalJSON and MarshalJSON
	// (host.go) read and write it, and the tag keeps it out of the object
	// shape.
	Server string `json:"-"`
}

// Auth is Connaisseur's registry auth block. At the node, credentials come
// from the docker config given to the daemon; every field is accepted for
// compatibility and ignored with a warning that says so.
type Auth struct {
	SecretName  string `json:"secretName,omitempty"`
	UseKeychain bool   `json:"useKeychain,omitempty"`
	// Username and Password are the inline form of Connaisseur's chart
	// values; never used (nor logged) here.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// Rule maps an image pattern to a validator.
type Rule struct {
	Pattern   string `json:"pattern"`
	Validator string `json:"validator,omitempty"`
	With      With   `json:"with,omitempty"`
	// Namespaces limits the rule to pods in these namespaces (extension).
	// Empty means every namespace.
	Namespaces []string `json:"namespaces,omitempty"`
	// Mode overrides the policy's mode for this rule (extension).
	Mode Mode `json:"mode,omitempty"`
}

// With holds a rule's validator options.
type With struct {
	// TrustRoot names the root to use; "*" means all; default "default".
	TrustRoot string `json:"trustRoot,omitempty"`
	// Threshold is how many of the selected roots must have signed.
	Threshold *int `json:"threshold,omitempty"`
	// Required lists roots that must have signed.
	Required []string `json:"required,omitempty"`
	// VerifyInTransparencyLog and VerifySCT are Connaisseur's switches for
	// keyless roots: a verified Rekor entry (whose integrated time is the
	// time the certificate is checked at) and a verified embedded SCT. Both
	// default to true (see verify/cosign). Key-based roots never consult a
	// log.
	VerifyInTransparencyLog *bool `json:"verifyInTransparencyLog,omitempty"`
	VerifySCT               *bool `json:"verifySCT,omitempty"`
	// Mode is Connaisseur's admission mode (mutate, insecureValidateOnly);
	// it has no meaning at the node and is accepted and ignored.
	Mode string `json:"mode,omitempty"`
	// Delegations is for notaryv1.
	Delegations []string `json:"delegations,omitempty"`

	// Attestations (cosign) are in-toto attestations the image must also
	// carry, each signed by the rule's trust roots; see verify/cosign.
	Attestations []Attestation `json:"attestations,omitempty"`

	// VerificationLevel (notation) is strict, permissive or audit, as in
	// the Notary Project trust policy; see verify/notation.
	VerificationLevel string `json:"verificationLevel,omitempty"`
	// TrustedIdentities (notation) pins the signing certificate's subject,
	// as in the Notary Project trust policy ("x509.subject: CN=...").
	TrustedIdentities []string `json:"trustedIdentities,omitempty"`
	// VerifyTimestamp (notation) is "always" or "afterCertExpiry", as in
	// the Notary Project trust policy and Connaisseur.
	VerifyTimestamp string `json:"verifyTimestamp,omitempty"`
}

// Attestation is one in-toto attestation a rule requires.
type Attestation struct {
	// PredicateType is the in-toto predicate type: a URI, e.g.
	// "https://slsa.dev/provenance/v1", or one of cosign's short names
	// (see verify/cosign).
	PredicateType string `json:"predicateType"`
	// Conditions are CEL expressions over the predicate that must all
	// hold (see verify/cosign for the language).
	Conditions []string `json:"conditions,omitempty"`
}

// Match is the result of looking up the rule for an image.
type Match struct {
	Rule      *Rule
	Validator *Validator
	// Index is the rule's position in Policy.Rules.
	Index int
	// Mode is the effective mode (rule, else policy, else enforce).
	Mode Mode
	// Image is the normalised, fully qualified reference that was matched.
	Image string
	// Why explains, one line each, why this rule won over the other matching
	// rules (for `policy match`).
	Why []string
}
