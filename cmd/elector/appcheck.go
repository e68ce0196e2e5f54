package main

import (
	"log/slog"

	"github.com/leader-election/leader-election/pkg/appcheck"
	"github.com/leader-election/leader-election/pkg/elector"
)

// newAppCheck builds the application's health check from --app-check, or returns nil when leadership is not
// health-gated. The settings were validated already; the caller runs it.
func newAppCheck(s settings) (*appcheck.Checker, error) {
	if s.appCheck == nil {
		return nil, nil
	}
	return appcheck.New(*s.appCheck, appcheck.Options{PodIP: s.podIP})
}

// electorOptions are the elector's options. A nil checker must stay a nil AppHealth: a typed nil pointer in the
// interface would read as "gated" and call methods on nil.
func electorOptions(log *slog.Logger, checker *appcheck.Checker) elector.Options {
	opts := elector.Options{Logger: log}
	// MERGE (issue 13, contract 1): Options.AppHealth comes with branch h13a; with it, this one line gates
	// leadership on the check:
	//	if checker != nil { opts.AppHealth = checker }
	return opts
}
