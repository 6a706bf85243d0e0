package policy

import "slices"

// Selected returns the names of the trust roots of v that the rule selects
// with trustRoot: every root of v for "*", otherwise the one root named
// (default "default"). A named root is returned even when v has no root of
// that name (Parse rejects such a policy), so that a verifier looking it up
// fails closed rather than needing no signature at all.
func (w With) Selected(v *Validator) []string {
	switch w.TrustRoot {
	case AllTrustRoots:
		if v == nil {
			return nil
		}
		names := make([]string, 0, len(v.TrustRoots))
		for _, r := range v.TrustRoots {
			names = append(names, r.Name)
		}
		return names
	case "":
		return []string{DefaultName}
	}
	return []string{w.TrustRoot}
}

// Need says what a cosign rule demands of the roots Selected returns:
// signatures from at least threshold distinct selected roots, among them
// every root in required.
//
//   - required is with.required as given (a copy);
//   - threshold is with.threshold when set, else len(required) when
//     required is set, else the number of selected roots. So trustRoot "*"
//     alone means every root must have signed, as in Connaisseur, and a
//     single named root means that root must have signed.
//
// threshold is never below 1, so that an empty selection can not turn into
// accepting an image nobody signed. Need means nothing for static validators.
func (w With) Need(v *Validator) (threshold int, required []string) {
	required = slices.Clone(w.Required)
	switch {
	case w.Threshold != nil:
		threshold = *w.Threshold
	case len(required) > 0:
		threshold = len(required)
	default:
		threshold = len(w.Selected(v))
	}
	return max(threshold, 1), required
}
