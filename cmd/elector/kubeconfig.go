package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// clientConfig loads a kubeconfig path, or a list of paths as in KUBECONFIG; "" selects the in-cluster
// configuration.
func clientConfig(kubeconfig string) clientcmd.ClientConfig {
	// No implicit ~/.kube/config: the elector uses exactly the files it is given, or the pod's credentials.
	rules := &clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(kubeconfig)}
	if len(rules.Precedence) == 1 {
		rules.ExplicitPath = rules.Precedence[0]
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
}

// restConfig is the API server connection for the elector. source names where kubeconfig came from.
func restConfig(kubeconfig, source string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig or KUBECONFIG given and no in-cluster configuration: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientConfig(kubeconfig).ClientConfig()
	if err != nil {
		if errors.Is(err, clientcmd.ErrEmptyConfig) {
			err = errors.New("no cluster configured in it")
		}
		return nil, fmt.Errorf("%s: cannot load the kubeconfig: %w", source, err)
	}
	return cfg, nil
}
