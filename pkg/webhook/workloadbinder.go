package webhook

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/leader-election/leader-election/pkg/contract"
)

// WorkloadBinder gives the ServiceAccount of every Deployment and StatefulSet whose pods will be injected the
// elector's permissions for the workload's Lease, as soon as the workload is stored or changed, before its pods
// exist. Without an admission webhook (admission mode "policy") nothing runs between a pod's creation and its
// elector's first Lease write, so PodBinder alone would leave every new workload's electors refused (403) until
// it caught up; binding from the workload closes that gap for replicas, and PodBinder still covers bare pods.
//
// Binding from a workload grants no more than binding from its pods: whoever may create a Deployment in a
// namespace may create its pods there, under any ServiceAccount of the namespace, and PodBinder binds those.
type WorkloadBinder struct {
	// Reader holds the Deployments, StatefulSets and Namespaces (the manager's cache).
	Reader client.Reader
	Binder AccountBinder
	// Excluded are the namespaces the installation keeps away from injection: nothing is bound there.
	Excluded NamespaceSet
}

// SetupWithManager watches Deployments and StatefulSets, and Namespaces for the enforce label, which enrols every
// workload of the namespace.
func (r *WorkloadBinder) SetupWithManager(mgr ctrl.Manager) error {
	for _, w := range []struct {
		name string
		obj  client.Object
		list func() client.ObjectList
	}{
		{"elector-binding-deployments", &appsv1.Deployment{}, func() client.ObjectList { return &appsv1.DeploymentList{} }},
		{"elector-binding-statefulsets", &appsv1.StatefulSet{}, func() client.ObjectList { return &appsv1.StatefulSetList{} }},
	} {
		rec := &workloadReconciler{WorkloadBinder: r, newObject: func() client.Object { return w.obj.DeepCopyObject().(client.Object) }}
		err := ctrl.NewControllerManagedBy(mgr).Named(w.name).
			For(w.obj).
			Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.workloadsIn(w.list))).
			Complete(rec)
		if err != nil {
			return err
		}
	}
	return nil
}

// workloadsIn maps a Namespace event to every workload of one kind in it: its enforce label may have changed.
func (r *WorkloadBinder) workloadsIn(list func() client.ObjectList) handler.MapFunc {
	return func(ctx context.Context, ns client.Object) []reconcile.Request {
		if r.Excluded[ns.GetName()] {
			return nil
		}
		l := list()
		if err := r.Reader.List(ctx, l, client.InNamespace(ns.GetName())); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing workloads after a namespace change", "namespace", ns.GetName())
			return nil
		}
		var out []reconcile.Request
		switch l := l.(type) {
		case *appsv1.DeploymentList:
			for _, d := range l.Items {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&d)})
			}
		case *appsv1.StatefulSetList:
			for _, s := range l.Items {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&s)})
			}
		}
		return out
	}
}

// workloadReconciler binds for one kind of workload.
type workloadReconciler struct {
	*WorkloadBinder
	newObject func() client.Object
}

// Reconcile binds the workload's ServiceAccount for its Lease when its pods will be injected.
func (r *workloadReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if r.Excluded[req.Namespace] {
		return ctrl.Result{}, nil
	}
	obj := r.newObject()
	if err := r.Reader.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if obj.GetDeletionTimestamp() != nil {
		return ctrl.Result{}, nil
	}
	var template *corev1.PodTemplateSpec
	switch w := obj.(type) {
	case *appsv1.Deployment:
		template = &w.Spec.Template
	case *appsv1.StatefulSet:
		template = &w.Spec.Template
	}
	ns := &corev1.Namespace{}
	if err := r.Reader.Get(ctx, client.ObjectKey{Name: req.Namespace}, ns); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	enforced := ns.Labels[contract.LabelEnforce] == "true"
	sa, lease, ok := WorkloadElection(req.Name, template, enforced)
	if !ok {
		return ctrl.Result{}, nil
	}
	// A ServiceAccount created after its workload fails here and is retried with backoff; its pods are bound by
	// PodBinder as they are created in any case.
	return ctrl.Result{}, r.Binder.Bind(ctx, req.Namespace, sa, lease)
}

// WorkloadElection says whether the pods of the workload called name, with this pod template, will be injected
// (opted in, or enrolled by a namespace whose enforce label is set), and if so as which ServiceAccount and for
// which Lease: the template's leader-election/lease-name, else the workload's name, as pkg/inject derives it from
// the pod's owner. A template whose annotations injection would refuse gets nothing: its pods never run.
func WorkloadElection(name string, template *corev1.PodTemplateSpec, enforced bool) (serviceAccount, lease string, ok bool) {
	ann := template.Annotations
	switch enabled, set := ann[contract.AnnotationEnabled]; {
	case set && enabled != "true" && enabled != "false":
		return "", "", false
	case enabled == "true", enforced && enabled != "false":
	default:
		return "", "", false
	}
	lease = name
	if v, set := ann[contract.AnnotationLeaseName]; set {
		if len(validation.IsDNS1123Subdomain(v)) > 0 {
			return "", "", false
		}
		lease = v
	}
	serviceAccount = template.Spec.ServiceAccountName
	if serviceAccount == "" {
		serviceAccount = "default"
	}
	return serviceAccount, lease, true
}
