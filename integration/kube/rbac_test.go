package kube

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestPluginIdentityIsLeastPrivileged: the chart's ServiceAccount may
// create and patch Events, and is refused everything else a compromised
// plugin could want: Secrets, Pods, reading Events, cluster objects.
func TestPluginIdentityIsLeastPrivileged(t *testing.T) {
	ctx := context.Background()
	sa, err := kubernetes.NewForConfig(pluginConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, "rbac")

	// What the API server says this identity may do in a namespace, less
	// what any authenticated identity may (review its own access, read
	// public cluster information): that of a ServiceAccount with no
	// bindings at all.
	baseline := rulesOf(t, saClient(t, ns, "nobody"), ns)
	var extra []string
	for _, r := range rulesOf(t, sa, ns) {
		if !slices.Contains(baseline, r) {
			extra = append(extra, r)
		}
	}
	if want := []string{"[events.k8s.io] [events] [] [create patch]"}; !slices.Equal(extra, want) {
		t.Errorf("beyond any authenticated identity, the plugin may do %q; want exactly %q", extra, want)
	}

	// Allowed: an Event in any namespace.
	ev := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{GenerateName: "direct-"},
		EventTime:           metav1.NowMicro(),
		Type:                corev1.EventTypeWarning,
		Reason:              "ImageVerificationFailed",
		Action:              "Deny",
		Note:                "direct write",
		ReportingController: "nri-image-verifier",
		ReportingInstance:   "rbac-test",
		Regarding:           corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: ns, Name: "p"},
	}
	if _, err := sa.EventsV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating an Event as the plugin: %v", err)
	}

	forbidden := map[string]func() error{
		"create a Secret": func() error {
			_, err := sa.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}}, metav1.CreateOptions{})
			return err
		},
		"get a Secret in its own namespace": func() error {
			_, err := sa.CoreV1().Secrets(pluginNS).Get(ctx, "anything", metav1.GetOptions{})
			return err
		},
		"list Secrets cluster-wide": func() error {
			_, err := sa.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
			return err
		},
		"list Pods cluster-wide": func() error {
			_, err := sa.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
			return err
		},
		"list Pods in a namespace": func() error {
			_, err := sa.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"create a Pod": func() error {
			_, err := sa.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}, metav1.CreateOptions{})
			return err
		},
		"read Events": func() error {
			_, err := sa.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"delete Events": func() error {
			return sa.EventsV1().Events(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		},
		"create a core/v1 Event": func() error {
			_, err := sa.CoreV1().Events(ns).Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{GenerateName: "e-"},
				InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "p"}, Reason: "R", Message: "m"},
				metav1.CreateOptions{})
			return err
		},
		"read its policy ConfigMap": func() error {
			_, err := sa.CoreV1().ConfigMaps(pluginNS).Get(ctx, "nri-image-verifier-policy", metav1.GetOptions{})
			return err
		},
		"list Nodes": func() error {
			_, err := sa.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err
		},
		"change its own ClusterRole": func() error {
			_, err := sa.RbacV1().ClusterRoles().Get(ctx, "nri-image-verifier", metav1.GetOptions{})
			return err
		},
	}
	for what, do := range forbidden {
		if err := do(); !apierrors.IsForbidden(err) {
			t.Errorf("%s: got %v, want Forbidden", what, err)
		} else if !strings.Contains(err.Error(), "system:serviceaccount:"+pluginNS+":"+pluginSA) {
			t.Errorf("%s: refused, but not as the plugin's ServiceAccount: %v", what, err)
		}
	}
}

// rulesOf lists the resource rules the API server grants the client's
// identity in ns.
func rulesOf(t *testing.T, cs *kubernetes.Clientset, ns string) []string {
	t.Helper()
	review, err := cs.AuthorizationV1().SelfSubjectRulesReviews().Create(context.Background(),
		&authzv1.SelfSubjectRulesReview{Spec: authzv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if review.Status.Incomplete {
		t.Fatalf("rules review incomplete: %s", review.Status.EvaluationError)
	}
	var rules []string
	for _, r := range review.Status.ResourceRules {
		rules = append(rules, fmt.Sprintf("%v %v %v %v", r.APIGroups, r.Resources, r.ResourceNames, r.Verbs))
	}
	return rules
}

// saClient is a client for a new ServiceAccount with no bindings.
func saClient(t *testing.T, ns, name string) *kubernetes.Clientset {
	t.Helper()
	ctx := context.Background()
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(testCluster.WithToken(tr.Status.Token))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
