// Package version holds the release this build belongs to, stamped by the Makefile and the Dockerfiles.
package version

// Version is the release, set with -ldflags "-X github.com/leader-election/leader-election/pkg/version.Version=...".
// It also tags the default elector image the webhook injects.
var Version = "v0.1.0"
