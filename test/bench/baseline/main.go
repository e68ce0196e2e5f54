// Command baseline is the leader election most guides teach, the one the benchmarks compare against: client-go's
// tools/leaderelection LeaderElector with a LeaseLock, 15s/10s/2s, ReleaseOnCancel, the identity from a flag and
// the context cancelled on SIGTERM (client-go's examples/leader-election, without klog so that it adds nothing
// to this module's dependencies). The benchmarks read its "new leader" lines to know a standby follows.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "path to the kubeconfig file")
	id := flag.String("id", "", "the holder identity")
	name := flag.String("lease-lock-name", "", "the Lease's name")
	namespace := flag.String("lease-lock-namespace", "", "the Lease's namespace")
	leaseDuration := flag.Duration("lease-duration", 15*time.Second, "client-go's usual default")
	renewDeadline := flag.Duration("renew-deadline", 10*time.Second, "client-go's usual default")
	retryPeriod := flag.Duration("retry-period", 2*time.Second, "client-go's usual default")
	flag.Parse()
	if *id == "" || *name == "" || *namespace == "" {
		log.Fatal("--id, --lease-lock-name and --lease-lock-namespace are required")
	}

	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("building the client configuration: %v", err)
	}
	client := kubernetes.NewForConfigOrDie(config)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ch
		log.Print("received termination, signaling shutdown")
		cancel()
	}()

	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: *name, Namespace: *namespace},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: *id},
	}
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		ReleaseOnCancel: true,
		LeaseDuration:   *leaseDuration,
		RenewDeadline:   *renewDeadline,
		RetryPeriod:     *retryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				log.Print("started leading")
				<-ctx.Done()
			},
			OnStoppedLeading: func() {
				log.Printf("leader lost: %s", *id)
				os.Exit(0)
			},
			OnNewLeader: func(identity string) {
				if identity == *id {
					return
				}
				log.Printf("new leader: %s", identity)
			},
		},
	})
}
