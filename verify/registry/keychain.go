package registry

import (
	"context"
	"fmt"
	"os"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// DockerConfigKeychain returns a keychain that reads credentials from the
// docker config.json at path (for example a mounted pull secret), the way
// authn.DefaultKeychain reads the user's own. The file is checked now and
// read again on each lookup, so rotated credentials are picked up by
// repositories the client has not talked to yet.
func DockerConfigKeychain(path string) (authn.Keychain, error) {
	k := &fileKeychain{path: path}
	if _, err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

type fileKeychain struct{ path string }

func (k *fileKeychain) load() (*configfile.ConfigFile, error) {
	f, err := os.Open(k.path)
	if err != nil {
		return nil, fmt.Errorf("docker config: %w", err)
	}
	defer f.Close()
	cf, err := config.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("docker config %s: %w", k.path, err)
	}
	return cf, nil
}

func (k *fileKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	return k.ResolveContext(context.Background(), target)
}

// ResolveContext looks the target up as authn.DefaultKeychain does: by
// repository first, then by registry, with Docker Hub's historical key.
func (k *fileKeychain) ResolveContext(_ context.Context, target authn.Resource) (authn.Authenticator, error) {
	cf, err := k.load()
	if err != nil {
		return nil, err
	}
	for _, key := range []string{target.String(), target.RegistryStr()} {
		if key == name.DefaultRegistry {
			key = authn.DefaultAuthKey
		}
		cfg, err := cf.GetAuthConfig(key)
		if err != nil {
			return nil, fmt.Errorf("docker config %s: credentials for %s: %w", k.path, key, err)
		}
		if cfg.Username == "" && cfg.Password == "" && cfg.Auth == "" && cfg.IdentityToken == "" && cfg.RegistryToken == "" {
			continue
		}
		return authn.FromConfig(authn.AuthConfig{
			Username:      cfg.Username,
			Password:      cfg.Password,
			Auth:          cfg.Auth,
			IdentityToken: cfg.IdentityToken,
			RegistryToken: cfg.RegistryToken,
		}), nil
	}
	return authn.Anonymous, nil
}
