package policy

import (
	"strings"

	"github.com/nri-image-verifier/nri-image-verifier/imageref"
)

// isDenyRule says whether v, a rule's validator, denies every image.
func isDenyRule(v *Validator) bool {
	return v != nil && v.Type == TypeStatic && v.Approve != nil && !*v.Approve
}

// hasRegistry says whether a pattern names its registry, or stands for
// any with a wildcard, rather than being qualified as a Docker Hub path
// ("redis", "bitnami/redis:*"). Connaisseur looks for such a pattern
// anywhere in the image name, so as a deny rule it also denies
// "docker.io/bitnami/redis:7"; qualified and anchored here, it does not.
func hasRegistry(pattern string) bool {
	first, _, found := strings.Cut(pattern, "/")
	if !found {
		first = namePart(pattern)
	}
	return found && imageref.LooksLikeHost(first) || hasWildcard(first)
}
