package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func pod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:v1"}}},
	}
}

// TestTolerateAnnotationIsGuarded: the chart's ValidatingAdmissionPolicy
// refuses Pods that carry the annotation letting containers start without
// the plugin, in every spelling containerd honours, outside the exempt
// namespaces; the plugin's own namespace and nodes' mirror Pods pass.
func TestTolerateAnnotationIsGuarded(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "apps")

	// The policy takes effect shortly after it is created: wait for it.
	deadline := time.Now().Add(waitFor)
	for {
		p := pod("probe", map[string]string{tolerateKey: "true"})
		_, err := admin.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && (apierrors.IsForbidden(err) || apierrors.IsInvalid(err)) {
			if !byPolicy(err) {
				t.Fatalf("refused, but not by the chart's policy: %v", err)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("a Pod with the tolerate annotation is still admitted: the admission policy does not work")
		}
		time.Sleep(200 * time.Millisecond)
	}

	for _, key := range []string{tolerateKey, tolerateKey + "/pod", tolerateKey + "/container.app"} {
		_, err := admin.CoreV1().Pods(ns).Create(ctx, pod("tolerating", map[string]string{key: "true"}), metav1.CreateOptions{})
		if !byPolicy(err) {
			t.Errorf("annotation %s: got %v, want refused by the policy", key, err)
		}
	}
	// The same annotation key set to false is still refused: the policy
	// does not parse values, and "false" today is one edit from "true".
	if _, err := admin.CoreV1().Pods(ns).Create(ctx, pod("false", map[string]string{tolerateKey: "false"}), metav1.CreateOptions{}); !byPolicy(err) {
		t.Errorf("annotation set to false: got %v, want refused by the policy", err)
	}
	// Adding it later is refused as well.
	p, err := admin.CoreV1().Pods(ns).Create(ctx, pod("plain", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a Pod without the annotation: %v", err)
	}
	p.Annotations = map[string]string{tolerateKey: "true"}
	if _, err := admin.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); !byPolicy(err) {
		t.Errorf("adding the annotation by an update: got %v, want refused by the policy", err)
	}

	// The plugin's own namespace is exempt (its pod carries it).
	ensureDefaultSA(t, pluginNS)
	if _, err := admin.CoreV1().Pods(pluginNS).Create(ctx, pod("cni-like", map[string]string{tolerateKey: "true"}),
		metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Errorf("annotated Pod in %s: %v", pluginNS, err)
	}

	// A node posting the mirror Pod of a static pod whose manifest has the
	// annotation: admitted, the node's manifest decides. Anyone else
	// posting a Pod that merely claims to be a mirror: refused.
	grantPodCreate(t, ns, "system:node:worker-1")
	grantPodCreate(t, ns, "mallory")
	mirror := map[string]string{tolerateKey: "true", "kubernetes.io/config.mirror": "abc"}
	static := pod("static-worker-1", mirror)
	static.Spec.NodeName = "worker-1"
	if _, err := impersonate(t, "system:node:worker-1").CoreV1().Pods(ns).Create(ctx, static,
		metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Errorf("mirror Pod from its node: %v", err)
	}
	fake := pod("fake-mirror", mirror)
	fake.Spec.NodeName = "worker-1"
	if _, err := impersonate(t, "mallory").CoreV1().Pods(ns).Create(ctx, fake,
		metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); !byPolicy(err) {
		t.Errorf("fake mirror Pod from a user: got %v, want refused by the policy", err)
	}
}

// grantPodCreate lets user create Pods in ns (RBAC only; there is no Node
// authorizer here).
func grantPodCreate(t *testing.T, ns, user string) {
	t.Helper()
	ctx := context.Background()
	name := "pods-" + strings.NewReplacer(":", "-").Replace(user)
	_, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create"}}}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// RBAC picks up new bindings through a watch: wait until it has.
	deadline := time.Now().Add(waitFor)
	for {
		sar, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{
			Spec: authzv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: &authzv1.ResourceAttributes{
				Namespace: ns, Verb: "create", Resource: "pods"}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still not allowed to create pods in %s", user, ns)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func impersonate(t *testing.T, user string) *kubernetes.Clientset {
	t.Helper()
	cfg := rest.CopyConfig(testCluster.Admin())
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// byPolicy says whether err is the chart's admission policy refusing.
func byPolicy(err error) bool {
	return err != nil && (apierrors.IsForbidden(err) || apierrors.IsInvalid(err)) &&
		strings.Contains(err.Error(), "lets containers start without the")
}
