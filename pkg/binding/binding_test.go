package binding

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

func account(name string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: types.UID("uid-" + name)}}
}

func TestName(t *testing.T) {
	if got := Name("web"); got != "leader-election-elector-web" {
		t.Errorf("Name(web) = %q", got)
	}
	long := strings.Repeat("a", 253)
	got := Name(long)
	if len(got) > 253 {
		t.Errorf("Name of a 253-character account is %d characters, over the limit", len(got))
	}
	if got == Name(strings.Repeat("a", 252)+"b") {
		t.Error("two long names that differ at the end map to the same RoleBinding")
	}
}

func TestBind(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithObjects(account("web")).Build()
	b := &Binder{Reader: c, Writer: c, ClusterRole: DefaultClusterRole}

	for range 2 { // the second call finds it in place
		if err := b.Bind(ctx, "shop", "web", "web"); err != nil {
			t.Fatal(err)
		}
	}
	rb := &rbacv1.RoleBinding{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: Name("web")}, rb); err != nil {
		t.Fatal(err)
	}
	if rb.RoleRef.Name != DefaultClusterRole || len(rb.Subjects) != 1 || rb.Subjects[0].Name != "web" ||
		rb.Subjects[0].Namespace != "shop" || rb.OwnerReferences[0].UID != "uid-web" {
		t.Errorf("RoleBinding = %+v", rb)
	}

	// Someone edited the subjects: the next pod repairs them.
	rb.Subjects = append(rb.Subjects, rbacv1.Subject{Kind: "User", Name: "mallory"})
	if err := c.Update(ctx, rb); err != nil {
		t.Fatal(err)
	}
	if err := b.Bind(ctx, "shop", "web", "web"); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(rb), rb); err != nil || len(rb.Subjects) != 1 {
		t.Errorf("subjects after repair = %+v (%v), want only the ServiceAccount", rb.Subjects, err)
	}
}

func TestBindAsksTheServerWhenTheCacheHasNotSeenTheAccount(t *testing.T) {
	cache := fake.NewClientBuilder().Build()
	server := fake.NewClientBuilder().WithObjects(account("new")).Build()
	b := &Binder{Reader: cache, Live: server, Writer: server, ClusterRole: DefaultClusterRole}
	if err := b.Bind(context.Background(), "shop", "new", "web"); err != nil {
		t.Fatalf("an account the cache has not seen yet: %v", err)
	}
}

func TestBindRefusals(t *testing.T) {
	ctx := context.Background()
	wrongRole := Desired(account("web"), "cluster-admin")
	c := fake.NewClientBuilder().WithObjects(account("web"), wrongRole).Build()
	b := &Binder{Reader: c, Writer: c, ClusterRole: DefaultClusterRole}
	if err := b.Bind(ctx, "shop", "missing", "web"); err == nil || !strings.Contains(err.Error(), "ServiceAccount shop/missing not found") {
		t.Errorf("missing account: %v", err)
	}
	if err := b.Bind(ctx, "shop", "web", "web"); err == nil || !strings.Contains(err.Error(), `"cluster-admin"`) {
		t.Errorf("binding to another role: %v, want a refusal naming it", err)
	}
}

// TestBindForeignObjects: a RoleBinding under our name that the webhook did not create (no labels, so the cache,
// which holds only ours, does not see it) is never taken as success: with the elector role it is repaired, with
// another role the pod is refused with a message naming the object.
func TestBindForeignObjects(t *testing.T) {
	ctx := context.Background()
	foreign := func(role string, subjects ...rbacv1.Subject) *rbacv1.RoleBinding {
		return &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: Name("web"), Namespace: "shop", Labels: map[string]string{"team": "shop"}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   subjects,
		}
	}
	t.Run("another role is refused, naming the object", func(t *testing.T) {
		server := fake.NewClientBuilder().WithObjects(account("web"), foreign("view", rbacv1.Subject{Kind: "ServiceAccount", Name: "web", Namespace: "shop"})).Build()
		cache := fake.NewClientBuilder().WithObjects(account("web")).Build()
		b := &Binder{Reader: cache, Live: server, Writer: server, ClusterRole: DefaultClusterRole}
		err := b.Bind(ctx, "shop", "web", "web")
		if err == nil || !strings.Contains(err.Error(), "RoleBinding shop/leader-election-elector-web exists and refers to ClusterRole \"view\"") {
			t.Fatalf("Bind = %v, want a refusal naming the RoleBinding and its role", err)
		}
	})
	t.Run("the elector role with other subjects is repaired", func(t *testing.T) {
		server := fake.NewClientBuilder().WithObjects(account("web"), foreign(DefaultClusterRole, rbacv1.Subject{Kind: "Group", Name: "system:authenticated"})).Build()
		cache := fake.NewClientBuilder().WithObjects(account("web")).Build()
		b := &Binder{Reader: cache, Live: server, Writer: server, ClusterRole: DefaultClusterRole}
		if err := b.Bind(ctx, "shop", "web", "web"); err != nil {
			t.Fatal(err)
		}
		rb := &rbacv1.RoleBinding{}
		if err := server.Get(ctx, client.ObjectKey{Namespace: "shop", Name: Name("web")}, rb); err != nil {
			t.Fatal(err)
		}
		want := Desired(account("web"), DefaultClusterRole)
		if !upToDate(rb, want) || rb.Labels["team"] != "shop" {
			t.Errorf("after repair: subjects %+v owners %+v labels %v, want ours (and the team label kept)", rb.Subjects, rb.OwnerReferences, rb.Labels)
		}
	})
}

// TestLeaseRole: the ServiceAccount's Role lists every Lease its pods were admitted for, and nothing else; two
// webhook replicas adding names at once lose none (the update carries the resourceVersion and is retried).
func TestLeaseRole(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithObjects(account("web")).Build()
	conflicts := 0
	racing := interceptor.NewClient(c, interceptor.Funcs{Update: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		if _, ok := obj.(*rbacv1.Role); ok && conflicts == 0 {
			conflicts++
			// Another replica adds "batch" between this one's read and its write.
			other := &rbacv1.Role{}
			if err := cl.Get(ctx, client.ObjectKeyFromObject(obj), other); err != nil {
				return err
			}
			other.Rules[0].ResourceNames = append(other.Rules[0].ResourceNames, "batch")
			if err := cl.Update(ctx, other); err != nil {
				return err
			}
		}
		return cl.Update(ctx, obj, opts...)
	}})
	b := &Binder{Reader: racing, Writer: racing, ClusterRole: DefaultClusterRole}
	for _, lease := range []string{"web", "web", "api"} {
		if err := b.Bind(ctx, "shop", "web", lease); err != nil {
			t.Fatalf("lease %s: %v", lease, err)
		}
	}
	role := &rbacv1.Role{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: LeaseRoleName("web")}, role); err != nil {
		t.Fatal(err)
	}
	want := []rbacv1.PolicyRule{{APIGroups: []string{HoldGroup}, Resources: []string{HoldResource}, Verbs: []string{HoldVerb}, ResourceNames: []string{"api", "batch", "web"}}}
	if !equality.Semantic.DeepEqual(role.Rules, want) || conflicts != 1 {
		t.Errorf("Role rules %+v after %d conflicts, want %+v", role.Rules, conflicts, want)
	}
	rb := &rbacv1.RoleBinding{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: LeaseRoleName("web")}, rb); err != nil {
		t.Fatal(err)
	}
	if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != role.Name || len(rb.Subjects) != 1 || rb.Subjects[0].Name != "web" {
		t.Errorf("lease RoleBinding %+v", rb)
	}

	// A Role under that name with rules of its own is made ours: only "hold" on the Lease being admitted.
	foreign := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: LeaseRoleName("other"), Namespace: "shop"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}}}
	c2 := fake.NewClientBuilder().WithObjects(account("other"), foreign).Build()
	cache := fake.NewClientBuilder().WithObjects(account("other")).Build()
	b2 := &Binder{Reader: cache, Live: c2, Writer: c2, ClusterRole: DefaultClusterRole}
	if err := b2.Bind(ctx, "shop", "other", "web"); err != nil {
		t.Fatal(err)
	}
	if err := c2.Get(ctx, client.ObjectKeyFromObject(foreign), role); err != nil {
		t.Fatal(err)
	}
	want[0].ResourceNames = []string{"web"}
	if !equality.Semantic.DeepEqual(role.Rules, want) {
		t.Errorf("foreign Role's rules after Bind: %+v, want %+v", role.Rules, want)
	}
}

// TestCheck: the admission-time check reads only, and refuses what Bind would refuse.
func TestCheck(t *testing.T) {
	ctx := context.Background()
	wrong := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: LeaseRoleName("web"), Namespace: "shop"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
	}
	server := fake.NewClientBuilder().WithObjects(account("web"), account("ok"), wrong).Build()
	cache := fake.NewClientBuilder().WithObjects(account("web"), account("ok")).Build()
	b := &Binder{Reader: cache, Live: server, Writer: failingWriter{}, ClusterRole: DefaultClusterRole}
	for _, tc := range []struct{ sa, want string }{
		{"ok", ""},
		{"missing", "ServiceAccount shop/missing not found"},
		{"web", `RoleBinding shop/leader-election-leases-web exists and refers to ClusterRole "edit"`},
	} {
		err := b.Check(ctx, "shop", tc.sa)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Check(%s) = %v, want %q", tc.sa, err, tc.want)
		}
	}
}

// failingWriter panics on any write: Check must make none.
type failingWriter struct{ client.Writer }

func (failingWriter) Create(context.Context, client.Object, ...client.CreateOption) error {
	panic("Check wrote")
}

func (failingWriter) Update(context.Context, client.Object, ...client.UpdateOption) error {
	panic("Check wrote")
}
