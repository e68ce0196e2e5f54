package main

import "time"

// params are the sizes of every benchmark. make bench uses fullParams; the quick test runs the same code with
// quickParams so that it cannot rot.
type params struct {
	// gracefulTrials failovers by SIGTERM per group (ours, release-and-race, the baseline), one after another, in turn.
	gracefulTrials int
	// crashTrials failovers by SIGKILL per implementation, spread over crashGroups groups per implementation
	// that run side by side (each waits out a whole lease per trial).
	crashTrials, crashGroups int
	// failoverTiming is used by the failover rows, crashTiming by the crash rows and loadTiming by the API load.
	failoverTiming, crashTiming, loadTiming timing
	// loadWindow is how long requests are counted.
	loadWindow time.Duration
	// injectArgs are go test's flags for pkg/inject's benchmarks.
	injectArgs []string
	// pods are created per series at each of concurrency, with and without the webhook, in podRounds series
	// of each kind (pooled).
	pods, podRounds int
	concurrency     []int
	// profileTime of pod creations of each kind at the largest concurrency are profiled; then the webhook
	// restarts and coldPods annotated pods are created one at a time.
	profileTime time.Duration
	coldPods    int
	// scaleGroups groups of scaleReplicas electors with scaleTiming; scaleWindow of steady state; then
	// scaleFailovers single-group failovers.
	scaleGroups, scaleReplicas int
	scaleTiming                timing
	scaleWindow                time.Duration
	scaleFailovers             int
	// rolloutSizes are the replica counts of the simulated rolling updates, each played rolloutRuns times per
	// strategy, deletion order and mode, with rolloutTiming.
	rolloutSizes      []int
	rolloutStrategies []rolloutStrategy
	rolloutRuns       int
	rolloutTiming     timing
	// rolloutRandom are the deletion orders played: false the leader last, true a random order.
	rolloutRandom []bool
	// rolloutReplicas are the sizes of the real node's rolling updates (each with both strategies and every
	// rolloutMode); appFailureTrials the app failures per mode.
	rolloutReplicas  []int
	appFailureTrials int
}

// shortTiming is the timing of the scale benchmark (and of the quick test's crash trials): 4s/2s/0.5s, the
// fastest the webhook and the elector accept (lease 3-300 s, lease - renew >= 2 s, retry >= 250 ms), with four
// times the renewal rate of the defaults, the load a cluster of impatient users would put on the API server.
var shortTiming = timing{4 * time.Second, 2 * time.Second, 500 * time.Millisecond}

func fullParams() params {
	return params{
		gracefulTrials: 30,
		crashTrials:    20, crashGroups: 10,
		failoverTiming: defaultTiming, crashTiming: defaultTiming, loadTiming: defaultTiming,
		loadWindow: 5 * time.Minute,
		injectArgs: []string{"-count", "6"},
		pods:       300, podRounds: 2,
		concurrency: []int{1, 16},
		profileTime: 10 * time.Second, coldPods: 100,
		scaleGroups: 100, scaleReplicas: 3, scaleTiming: shortTiming,
		scaleWindow: time.Minute, scaleFailovers: 5,
		rolloutSizes: []int{3, 5, 10}, rolloutStrategies: []rolloutStrategy{defaultStrategy, surgeOnlyStrategy},
		rolloutRuns: 3, rolloutTiming: defaultTiming, rolloutRandom: []bool{false, true},
		rolloutReplicas: []int{3, 5, 10}, appFailureTrials: 5,
	}
}

func quickParams() params {
	return params{
		gracefulTrials: 2,
		crashTrials:    2, crashGroups: 2,
		failoverTiming: defaultTiming, crashTiming: shortTiming, loadTiming: defaultTiming,
		loadWindow: 10 * time.Second,
		injectArgs: []string{"-count", "1", "-benchtime", "100x"},
		pods:       20, podRounds: 1,
		concurrency: []int{1, 4},
		profileTime: time.Second, coldPods: 5,
		scaleGroups: 3, scaleReplicas: 3, scaleTiming: shortTiming,
		scaleWindow: 5 * time.Second, scaleFailovers: 1,
		// With 3 replicas both strategies resolve to maxSurge 1, maxUnavailable 0: one is enough, and the random
		// order is the one that tells handover from a race.
		rolloutSizes: []int{3}, rolloutStrategies: []rolloutStrategy{defaultStrategy},
		rolloutRuns: 1, rolloutTiming: defaultTiming, rolloutRandom: []bool{true},
		rolloutReplicas: []int{3}, appFailureTrials: 1,
	}
}
