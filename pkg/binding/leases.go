package binding

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Which Leases a ServiceAccount's electors may write. RBAC grants the elector ClusterRole update on every Lease of
// the namespace (create cannot be limited by name at all), so the API server's policy
// leader-election-elector-leases asks the authorizer whether the writer may "hold" the Lease by name, a synthetic
// permission in the group leader-election.io that only this Role grants. The webhook adds a Lease's name when it
// admits a pod of that ServiceAccount: another workload's or another controller's Lease stays out of reach.
// Granting a synthetic permission takes no real power: RBAC's escalation check is met by the webhook holding
// "hold" on all Leases, which no API serves.
const (
	// HoldGroup, HoldResource and HoldVerb are the synthetic permission the Lease policy checks.
	HoldGroup    = "leader-election.io"
	HoldResource = "leases"
	HoldVerb     = "hold"
)

// LeaseRoleName is the name of the Role (and of its RoleBinding) listing a ServiceAccount's Leases.
func LeaseRoleName(serviceAccount string) string {
	return prefixed("leader-election-leases-", serviceAccount)
}

// maxRoleUpdates bounds the retries when webhook replicas add Lease names to one Role at the same time.
const maxRoleUpdates = 5

// ensureLeaseRole makes sure the ServiceAccount's Role lists lease, adding it to the names already there.
func (b *Binder) ensureLeaseRole(ctx context.Context, account *corev1.ServiceAccount, lease string) error {
	key := client.ObjectKey{Namespace: account.Namespace, Name: LeaseRoleName(account.Name)}
	reader := b.Reader
	for range maxRoleUpdates {
		have := &rbacv1.Role{}
		err := reader.Get(ctx, key, have)
		if apierrors.IsNotFound(err) {
			err = b.Writer.Create(ctx, desiredLeaseRole(account, []string{lease}, nil))
			if err == nil {
				return nil
			}
			if !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating Role %s: %w", key, err)
			}
			reader = b.live() // a replica created it, or a Role we did not make has the name: read it
			continue
		}
		if err != nil {
			return fmt.Errorf("reading Role %s: %w", key, err)
		}
		names := heldLeases(have)
		if slices.Contains(names, lease) && equality.Semantic.DeepEqual(have.Rules, desiredLeaseRole(account, names, nil).Rules) &&
			ownedBy(have, account) && hasLabels(have) {
			return nil
		}
		// Add the name (or, for a Role under our name that is not ours, replace its rules with ours). The update
		// carries the resourceVersion read, so two replicas adding different names never lose one.
		want := desiredLeaseRole(account, append(names, lease), have)
		err = b.Writer.Update(ctx, want)
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) {
			return fmt.Errorf("adding Lease %q to Role %s: %w", lease, key, err)
		}
		reader = b.live()
	}
	return fmt.Errorf("adding Lease %q to Role %s: it kept changing (%d attempts)", lease, key, maxRoleUpdates)
}

// heldLeases are the Lease names a Role of ours grants, or none if its rules are not ours.
func heldLeases(role *rbacv1.Role) []string {
	if len(role.Rules) != 1 {
		return nil
	}
	r := role.Rules[0]
	if !slices.Equal(r.APIGroups, []string{HoldGroup}) || !slices.Equal(r.Resources, []string{HoldResource}) || !slices.Equal(r.Verbs, []string{HoldVerb}) {
		return nil
	}
	return slices.Clone(r.ResourceNames)
}

// desiredLeaseRole is the Role for account granting "hold" on names (sorted, without repeats), updating have's
// metadata when there is one.
func desiredLeaseRole(account *corev1.ServiceAccount, names []string, have *rbacv1.Role) *rbacv1.Role {
	slices.Sort(names)
	names = slices.Compact(names)
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: LeaseRoleName(account.Name), Namespace: account.Namespace}}
	if have != nil {
		role = have.DeepCopy()
	}
	if role.Labels == nil {
		role.Labels = map[string]string{}
	}
	for k, v := range Labels {
		role.Labels[k] = v
	}
	role.OwnerReferences = ownerRefs(account)
	role.Rules = []rbacv1.PolicyRule{{APIGroups: []string{HoldGroup}, Resources: []string{HoldResource}, Verbs: []string{HoldVerb}, ResourceNames: names}}
	return role
}

// desiredLeaseBinding binds the account's lease Role to the account.
func desiredLeaseBinding(account *corev1.ServiceAccount) *rbacv1.RoleBinding {
	rb := Desired(account, "")
	rb.Name = LeaseRoleName(account.Name)
	rb.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: LeaseRoleName(account.Name)}
	return rb
}

func ownerRefs(account *corev1.ServiceAccount) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: "v1", Kind: "ServiceAccount", Name: account.Name, UID: account.UID}}
}

func hasLabels(obj metav1.Object) bool {
	for k, v := range Labels {
		if obj.GetLabels()[k] != v {
			return false
		}
	}
	return true
}

func ownedBy(obj metav1.Object, account *corev1.ServiceAccount) bool {
	return equality.Semantic.DeepEqual(obj.GetOwnerReferences(), ownerRefs(account))
}
