package kubetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
)

// The chart's objects as rendered into daemonset/manifests (the daemonset
// package's test keeps that file equal to what helm renders).
const (
	// Manifests is the rendered chart, relative to the repository root.
	Manifests = "daemonset/manifests/nri-image-verifier.yaml"
	// PluginNamespace and PluginServiceAccount are the identity the chart
	// gives the plugin.
	PluginNamespace      = "kube-system"
	PluginServiceAccount = "nri-image-verifier"
)

// ApplyChart creates every object of the rendered chart (root is the
// repository root), as `kubectl apply -f daemonset/manifests/` would: the
// server validates them all (the DaemonSet's pod spec, the admission
// policy's CEL), and the ServiceAccount and RBAC are then what the plugin
// runs with.
func (c *Cluster) ApplyChart(ctx context.Context, root string) error {
	raw, err := os.ReadFile(filepath.Join(root, Manifests))
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
		if err := c.create(ctx, obj); err != nil {
			return err
		}
		kinds[fmt.Sprintf("%T", obj)]++
	}
	// The tests rely on these; a chart that stops rendering one must fail
	// here, not pass vacuously.
	for _, want := range []string{"*v1.ServiceAccount", "*v1.ClusterRole", "*v1.ClusterRoleBinding", "*v1.DaemonSet",
		"*v1.ConfigMap", "*v1.ValidatingAdmissionPolicy", "*v1.ValidatingAdmissionPolicyBinding"} {
		if kinds[want] != 1 {
			return fmt.Errorf("%s has %d %s, want 1", Manifests, kinds[want], want)
		}
	}
	return nil
}

func (c *Cluster) create(ctx context.Context, obj runtime.Object) error {
	opts := metav1.CreateOptions{FieldValidation: "Strict"}
	admin := c.Client
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

// PluginToken is a token of the chart's ServiceAccount for the plugin, as
// its pod would have mounted, valid for an hour.
func (c *Cluster) PluginToken(ctx context.Context) (string, error) {
	exp := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(PluginNamespace).CreateToken(ctx, PluginServiceAccount,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", PluginNamespace, PluginServiceAccount, err)
	}
	return tr.Status.Token, nil
}

// NewNamespace creates a namespace named prefix-<random> with the
// "default" ServiceAccount that the (absent) controller manager would
// make, so that Pods can be created in it.
func (c *Cluster) NewNamespace(ctx context.Context, prefix string) (string, error) {
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return ns.Name, c.EnsureDefaultSA(ctx, ns.Name)
}

// EnsureDefaultSA creates the "default" ServiceAccount of ns if it is not
// there yet.
func (c *Cluster) EnsureDefaultSA(ctx context.Context, ns string) error {
	_, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}
