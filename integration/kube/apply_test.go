package kube

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
)

// The chart's objects as rendered into daemonset/manifests (the daemonset
// package's test keeps that file equal to what helm renders).
const (
	manifests   = "daemonset/manifests/nri-image-verifier.yaml"
	pluginNS    = "kube-system"
	pluginSA    = "nri-image-verifier"
	tolerateKey = "tolerate-missing-nri-plugins.noderesource.dev"
)

// applyChart creates every object of the rendered chart on the API server,
// as `kubectl apply -f daemonset/manifests/` would: the server validates
// them all (the DaemonSet's pod spec, the admission policy's CEL), and the
// ServiceAccount and RBAC are then what the plugin runs with.
func applyChart(ctx context.Context, root string) error {
	raw, err := os.ReadFile(filepath.Join(root, manifests))
	if err != nil {
		return err
	}
	dec := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	kinds := map[string]int{}
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		obj, _, err := dec.Decode([]byte(doc), nil, nil)
		if err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		if err := create(ctx, obj); err != nil {
			return err
		}
		kinds[fmt.Sprintf("%T", obj)]++
	}
	// The test below relies on these; a chart that stops rendering one
	// must fail here, not pass vacuously.
	for _, want := range []string{"*v1.ServiceAccount", "*v1.ClusterRole", "*v1.ClusterRoleBinding", "*v1.DaemonSet",
		"*v1.ConfigMap", "*v1.ValidatingAdmissionPolicy", "*v1.ValidatingAdmissionPolicyBinding"} {
		if kinds[want] != 1 {
			return fmt.Errorf("%s has %d %s, want 1", manifests, kinds[want], want)
		}
	}
	return nil
}

func create(ctx context.Context, obj runtime.Object) error {
	opts := metav1.CreateOptions{FieldValidation: "Strict"}
	var err error
	switch o := obj.(type) {
	case *corev1.ServiceAccount:
		_, err = admin.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, opts)
	case *corev1.ConfigMap:
		_, err = admin.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, opts)
	case *rbacv1.ClusterRole:
		_, err = admin.RbacV1().ClusterRoles().Create(ctx, o, opts)
	case *rbacv1.ClusterRoleBinding:
		_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, o, opts)
	case *appsv1.DaemonSet:
		_, err = admin.AppsV1().DaemonSets(o.Namespace).Create(ctx, o, opts)
	case *admissionv1.ValidatingAdmissionPolicy:
		_, err = admin.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, o, opts)
	case *admissionv1.ValidatingAdmissionPolicyBinding:
		_, err = admin.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, o, opts)
	default:
		return fmt.Errorf("the chart renders a %T, which this test does not know how to apply", obj)
	}
	if err != nil {
		return fmt.Errorf("create %T: %w", obj, err)
	}
	return nil
}
