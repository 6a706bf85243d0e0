package events

import (
	"errors"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrNoAPI means there is no Kubernetes API to talk to: not running in a
// pod and no kubeconfig given. The daemon then enforces without Events.
var ErrNoAPI = errors.New("no Kubernetes API access: not running in a pod and no --kubeconfig given")

// RESTConfig finds the API server: the kubeconfig file if one is named,
// else the pod's service account (in-cluster config).
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if errors.Is(err, rest.ErrNotInCluster) {
		return nil, ErrNoAPI
	}
	if err != nil {
		return nil, fmt.Errorf("in-cluster config: %w", err)
	}
	return cfg, nil
}
