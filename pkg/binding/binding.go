// Package binding gives a pod's ServiceAccount, in the pod's namespace, exactly the permissions the elector
// needs: a RoleBinding to the elector ClusterRole that the install ships, and a Role naming the Leases of the
// workloads that run as that ServiceAccount (see leases.go). Both are owned by the ServiceAccount, so the garbage
// collector removes them when the ServiceAccount goes.
package binding

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Labels mark the RoleBindings and Roles this package manages; the webhook caches only those.
var Labels = map[string]string{
	"app.kubernetes.io/managed-by": "leader-election",
	"app.kubernetes.io/component":  "elector-binding",
}

// DefaultClusterRole is the ClusterRole the install ships for electors.
const DefaultClusterRole = "leader-election-elector"

// Binder creates and repairs the RoleBindings. Reader may be a cache; Live, if set, is asked when the cache has
// not seen a ServiceAccount yet (one created a moment before its pods); Writer talks to the API server.
type Binder struct {
	Reader      client.Reader
	Live        client.Reader
	Writer      client.Writer
	ClusterRole string
}

// Bind makes sure ServiceAccount sa in namespace ns is bound to the elector ClusterRole and may hold Lease lease.
// It is idempotent and safe to call from many webhook replicas at once: a lost creation race counts as success.
// Call it only for a pod the API server has stored: an AdmissionReview proves nothing (anyone who reaches the
// webhook's port can send one), and these grants change what the Lease policy lets the account do.
func (b *Binder) Bind(ctx context.Context, ns, sa, lease string) error {
	account, err := b.account(ctx, ns, sa)
	if err != nil {
		return err
	}
	if err := b.ensureBinding(ctx, Desired(account, b.ClusterRole), sa); err != nil {
		return err
	}
	if err := b.ensureLeaseRole(ctx, account, lease); err != nil {
		return err
	}
	return b.ensureBinding(ctx, desiredLeaseBinding(account), sa)
}

// Check reports, writing nothing, why Bind would fail for ServiceAccount sa in namespace ns: the account does not
// exist, or a RoleBinding under one of the names Bind uses refers to another role. The admission handler calls it
// so that such a pod is refused with the reason; the grants follow once the pod is stored.
func (b *Binder) Check(ctx context.Context, ns, sa string) error {
	account, err := b.account(ctx, ns, sa)
	if err != nil {
		return err
	}
	for _, want := range []*rbacv1.RoleBinding{Desired(account, b.ClusterRole), desiredLeaseBinding(account)} {
		have := &rbacv1.RoleBinding{}
		err := b.Reader.Get(ctx, client.ObjectKeyFromObject(want), have)
		if apierrors.IsNotFound(err) {
			// The cache holds only ours: a RoleBinding someone else made under the name is read live.
			err = b.live().Get(ctx, client.ObjectKeyFromObject(want), have)
		}
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return fmt.Errorf("reading RoleBinding %s/%s: %w", ns, want.Name, err)
		case have.RoleRef != want.RoleRef:
			return foreignRoleRef(have, want, sa)
		}
	}
	return nil
}

// account reads ServiceAccount sa, from the cache or, when the cache has not seen it yet, from the API server.
func (b *Binder) account(ctx context.Context, ns, sa string) (*corev1.ServiceAccount, error) {
	account := &corev1.ServiceAccount{}
	key := types.NamespacedName{Namespace: ns, Name: sa}
	err := b.Reader.Get(ctx, key, account)
	if apierrors.IsNotFound(err) && b.Live != nil {
		err = b.Live.Get(ctx, key, account)
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("ServiceAccount %s/%s not found: create it before the pod, the elector runs as it", ns, sa)
		}
		return nil, fmt.Errorf("reading ServiceAccount %s/%s: %w", ns, sa, err)
	}
	return account, nil
}

// foreignRoleRef is the error for a RoleBinding under our name that refers to another role.
func foreignRoleRef(have, want *rbacv1.RoleBinding, sa string) error {
	// roleRef is immutable, and the webhook may not delete bindings: an administrator must.
	return fmt.Errorf("RoleBinding %s/%s exists and refers to %s %q, not %s %q, so ServiceAccount %s would get no Lease permissions; "+
		"it was not created by leader-election (or was changed): delete it and the webhook recreates it",
		want.Namespace, want.Name, have.RoleRef.Kind, have.RoleRef.Name, want.RoleRef.Kind, want.RoleRef.Name, sa)
}

// ensureBinding creates want, or accepts or repairs the RoleBinding of its name.
func (b *Binder) ensureBinding(ctx context.Context, want *rbacv1.RoleBinding, sa string) error {
	ns := want.Namespace
	have := &rbacv1.RoleBinding{}
	err := b.Reader.Get(ctx, client.ObjectKeyFromObject(want), have)
	if apierrors.IsNotFound(err) {
		err = b.Writer.Create(ctx, want)
		if err == nil {
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating RoleBinding %s/%s: %w", ns, want.Name, err)
		}
		// Another webhook replica won the race, or the name is taken by a RoleBinding the cache does not hold
		// (it holds only ours): read it, and accept it only if it grants what the elector needs.
		have = &rbacv1.RoleBinding{}
		err = b.live().Get(ctx, client.ObjectKeyFromObject(want), have)
	}
	if err != nil {
		return fmt.Errorf("reading RoleBinding %s/%s: %w", ns, want.Name, err)
	}
	if upToDate(have, want) {
		return nil
	}
	if have.RoleRef != want.RoleRef {
		return foreignRoleRef(have, want, sa)
	}
	// The right role with other subjects, owners or labels (a RoleBinding someone else made under our name, or
	// ours edited): make it ours again. Other labels stay.
	updated := have.DeepCopy()
	updated.Subjects, updated.OwnerReferences = want.Subjects, want.OwnerReferences
	if updated.Labels == nil {
		updated.Labels = map[string]string{}
	}
	for k, v := range want.Labels {
		updated.Labels[k] = v
	}
	if err := b.Writer.Update(ctx, updated); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("repairing RoleBinding %s/%s (subjects %v, not ServiceAccount %s alone): %w", ns, want.Name, have.Subjects, sa, err)
	}
	return nil
}

// live is the reader that sees every RoleBinding, not only those the cache holds.
func (b *Binder) live() client.Reader {
	if b.Live != nil {
		return b.Live
	}
	return b.Reader
}

// Desired is the RoleBinding for a ServiceAccount.
func Desired(sa *corev1.ServiceAccount, clusterRole string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{
			Name:      Name(sa.Name),
			Namespace: sa.Namespace,
			Labels:    Labels,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "ServiceAccount", Name: sa.Name, UID: sa.UID,
			}},
		},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: sa.Namespace}},
	}
}

// Name is the RoleBinding's name for a ServiceAccount: readable, and within the 253-character limit.
func Name(serviceAccount string) string {
	return prefixed("leader-election-elector-", serviceAccount)
}

// prefixed is prefix + serviceAccount, shortened with a hash of the account's name where it would be too long.
func prefixed(prefix, serviceAccount string) string {
	const max = 253
	name := prefix + serviceAccount
	if len(name) <= max {
		return name
	}
	sum := sha256.Sum256([]byte(serviceAccount))
	return name[:max-11] + "-" + hex.EncodeToString(sum[:])[:10]
}

func upToDate(have, want *rbacv1.RoleBinding) bool {
	for k, v := range want.Labels {
		if have.Labels[k] != v {
			return false
		}
	}
	return have.RoleRef == want.RoleRef &&
		equality.Semantic.DeepEqual(have.Subjects, want.Subjects) &&
		equality.Semantic.DeepEqual(have.OwnerReferences, want.OwnerReferences)
}
