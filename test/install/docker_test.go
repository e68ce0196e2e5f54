package install

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/leader-election/leader-election/test/controlplane"
)

// TestDockerfiles checks what can be checked without a Docker engine: pinned base images without a registry host,
// a non-root final user, a go build with exactly the Makefile's flags (so images and `make build` binaries are the
// same program), and that build run on a copy of only what the build stage COPYs, giving a static binary.
func TestDockerfiles(t *testing.T) {
	makeVars := readMakeVars(t)
	// The Makefile's GOBUILD, with $(VERSION) as the Dockerfile's build argument.
	makeVars["VERSION"] = "${VERSION}"
	want := shellWords(t, expandMake(t, makeVars, "GOBUILD"))
	wantEnv, wantCmd := splitEnv(want)
	if !slices.Equal(wantCmd[:2], []string{"go", "build"}) {
		t.Fatalf("Makefile GOBUILD %q is not a go build", want)
	}

	for _, cmd := range []string{"webhook", "elector"} {
		file := "Dockerfile." + cmd
		t.Run(file, func(t *testing.T) {
			df := parseDockerfile(t, filepath.Join(controlplane.RepoRoot(), file))
			if len(df.stages) < 2 {
				t.Fatalf("want a multi-stage build, got %d stage(s)", len(df.stages))
			}
			for i, st := range df.stages {
				if err := checkBaseImage(st.from, df.stages[:i]); err != nil {
					t.Errorf("FROM %s: %v", st.from, err)
				}
			}

			final := df.stages[len(df.stages)-1]
			if err := checkNonRoot(final.user); err != nil {
				t.Errorf("final stage: %v", err)
			}

			var builds []string
			for _, st := range df.stages {
				for _, run := range st.runs {
					if strings.Contains(run, "go build") {
						builds = append(builds, run)
						if !slices.Contains(st.args, "VERSION") {
							t.Errorf("stage %s runs go build without ARG VERSION", st.name)
						}
					}
				}
			}
			if len(builds) != 1 {
				t.Fatalf("want one RUN with go build, got %d", len(builds))
			}
			env, got := splitEnv(shellWords(t, builds[0]))
			for _, e := range wantEnv {
				if !slices.Contains(env, e) {
					t.Errorf("go build runs without %s (Makefile GOBUILD): %q", e, builds[0])
				}
			}
			if len(got) < len(wantCmd) || !slices.Equal(got[:len(wantCmd)], wantCmd) {
				t.Errorf("go build flags differ from the Makefile's\n got: %q\nwant: %q followed by -o and the package", got, wantCmd)
			}
			if pkg := got[len(got)-1]; pkg != "./cmd/"+cmd {
				t.Errorf("builds %s, want ./cmd/%s", pkg, cmd)
			}
			if !strings.Contains(final.entrypoint, "/"+cmd) {
				t.Errorf("ENTRYPOINT %q does not run /%s", final.entrypoint, cmd)
			}
			buildLikeDocker(t, df, builds[0], cmd)
		})
	}
}

// TestDockerignore: the build context has what the Dockerfiles copy and nothing else worth sending.
func TestDockerignore(t *testing.T) {
	patterns := readDockerignore(t)
	for _, tc := range []struct {
		path string
		sent bool
	}{
		{"go.mod", true},
		{"go.sum", true},
		{"cmd/webhook/main.go", true},
		{"pkg/inject/mutate.go", true},
		{"pkg/inject/golden_test.go", false},
		{"pkg/inject/testdata/plain.in.yaml", false},
		{"bin/webhook", false},
		{"bin/tools/helm", false},
		{".git/HEAD", false},
		{"webhook", false},
		{"charts/leader-election/Chart.yaml", false},
		{"test/install/chart_test.go", false},
	} {
		if got := !ignored(patterns, tc.path); got != tc.sent {
			t.Errorf("%s: sent to the Docker build: %v, want %v", tc.path, got, tc.sent)
		}
	}
}

// buildLikeDocker runs the build stage's go build without a Docker engine: in a directory holding only what the
// stage COPYs from the context (after .dockerignore), with the build arguments set. The result must be a static
// binary stamped with the version, built with -trimpath and without cgo.
func buildLikeDocker(t *testing.T, df dockerfile, run, cmd string) {
	t.Helper()
	const version = "v9.9.9-dockerfile-test"
	root := controlplane.RepoRoot()
	patterns := readDockerignore(t)
	ctx := t.TempDir()
	for _, c := range df.stages[0].copies {
		for _, src := range c[:len(c)-1] {
			err := filepath.WalkDir(filepath.Join(root, src), func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(root, p)
				if ignored(patterns, filepath.ToSlash(rel)) {
					return nil
				}
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				dst := filepath.Join(ctx, rel)
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					return err
				}
				return os.WriteFile(dst, b, 0o644)
			})
			if err != nil {
				t.Fatalf("COPY %s: %v", src, err)
			}
		}
	}
	buildArgs := map[string]string{"VERSION": version, "TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH}
	env, words := splitEnv(shellWords(t, os.Expand(run, func(k string) string { return buildArgs[k] })))
	out := filepath.Join(t.TempDir(), cmd)
	if i := slices.Index(words, "-o"); i >= 0 && i+1 < len(words) {
		words[i+1] = out
	}
	c := exec.Command(words[0], words[1:]...)
	c.Dir = ctx
	c.Env = append(os.Environ(), env...)
	if msg, err := c.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's go build, on a context of only its COPY sources: %v\n%s", err, msg)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked; the image has no libc", cmd)
		}
	}
	info, err := buildinfo.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("build settings CGO_ENABLED=%q -trimpath=%q, want 0 and true", settings["CGO_ENABLED"], settings["-trimpath"])
	}
	// -trimpath keeps -ldflags out of the build settings: look for the stamped version in the binary itself.
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(version)) {
		t.Errorf("%s does not hold the version %s passed as build argument VERSION", cmd, version)
	}
	if _, err := f.Symbols(); !errors.Is(err, elf.ErrNoSymbols) {
		t.Errorf("%s has a symbol table; -ldflags -s strips it", cmd)
	}
}

type stage struct {
	name, from, user, entrypoint string
	args, runs                   []string
	// copies are the COPY instructions from the build context (not --from another stage): sources, then destination.
	copies [][]string
	// stageCopies are the COPY --from=<stage> instructions: the flag, sources, then destination.
	stageCopies [][]string
}

type dockerfile struct{ stages []*stage }

// parseDockerfile reads the instructions this test needs, joining continued lines.
func parseDockerfile(tb testing.TB, file string) dockerfile {
	tb.Helper()
	f, err := os.Open(file)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var df dockerfile
	var line string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(text, "#") || (text == "" && line == "") {
			continue
		}
		if cont, ok := strings.CutSuffix(text, "\\"); ok {
			line += cont + " "
			continue
		}
		line += text
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		line = ""
		instr = strings.ToUpper(instr)
		if instr != "FROM" && len(df.stages) == 0 {
			if instr != "ARG" {
				tb.Fatalf("%s: %s before FROM", file, instr)
			}
			continue
		}
		switch instr {
		case "FROM":
			words := strings.Fields(rest)
			words = slices.DeleteFunc(words, func(w string) bool { return strings.HasPrefix(w, "--") })
			st := &stage{from: words[0]}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				st.name = words[2]
			}
			df.stages = append(df.stages, st)
		case "ARG":
			name, _, _ := strings.Cut(rest, "=")
			df.stages[len(df.stages)-1].args = append(df.stages[len(df.stages)-1].args, name)
		case "RUN":
			df.stages[len(df.stages)-1].runs = append(df.stages[len(df.stages)-1].runs, rest)
		case "COPY":
			if !strings.Contains(rest, "--from=") {
				df.stages[len(df.stages)-1].copies = append(df.stages[len(df.stages)-1].copies, strings.Fields(rest))
			} else {
				df.stages[len(df.stages)-1].stageCopies = append(df.stages[len(df.stages)-1].stageCopies, strings.Fields(rest))
			}
		case "USER":
			df.stages[len(df.stages)-1].user = rest
		case "ENTRYPOINT":
			df.stages[len(df.stages)-1].entrypoint = rest
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return df
}

// checkBaseImage accepts scratch, an earlier stage, or an image pinned by a tag other than latest and written
// without a registry host.
func checkBaseImage(image string, earlier []*stage) error {
	if image == "scratch" || slices.ContainsFunc(earlier, func(s *stage) bool { return s.name != "" && s.name == image }) {
		return nil
	}
	if strings.Contains(image, "$") {
		return fmt.Errorf("base image from a build argument cannot be checked; pin it")
	}
	repo, digest, _ := strings.Cut(image, "@")
	name, tag := repo, ""
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		name, tag = repo[:i], repo[i+1:]
	}
	switch {
	case tag == "" && digest == "":
		return fmt.Errorf("not pinned: give it a tag")
	case tag == "latest":
		return fmt.Errorf("pinned to latest, which moves")
	}
	if first, _, ok := strings.Cut(name, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return fmt.Errorf("names the registry host %s", first)
	}
	return nil
}

// checkNonRoot accepts a USER that is a non-zero numeric UID (and GID, if given): Kubernetes' runAsNonRoot can only
// verify numeric users.
func checkNonRoot(user string) error {
	if user == "" {
		return fmt.Errorf("no USER: the image runs as root")
	}
	for _, id := range strings.Split(user, ":") {
		if !regexp.MustCompile(`^[0-9]+$`).MatchString(id) {
			return fmt.Errorf("USER %s: want numeric ids so that runAsNonRoot can check them", user)
		}
		if strings.TrimLeft(id, "0") == "" {
			return fmt.Errorf("USER %s is root", user)
		}
	}
	return nil
}

// readMakeVars reads the Makefile's simple variable definitions (NAME := value, NAME ?= value).
func readMakeVars(tb testing.TB) map[string]string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "Makefile"))
	if err != nil {
		tb.Fatal(err)
	}
	vars := map[string]string{}
	re := regexp.MustCompile(`^([A-Z_]+)\s*[:?]?=\s*(.*)$`)
	for _, l := range strings.Split(string(b), "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			vars[m[1]] = strings.TrimSpace(m[2])
		}
	}
	return vars
}

// expandMake expands $(NAME) references in a Makefile variable.
func expandMake(tb testing.TB, vars map[string]string, name string) string {
	tb.Helper()
	v, ok := vars[name]
	if !ok {
		tb.Fatalf("Makefile defines no %s", name)
	}
	return regexp.MustCompile(`\$\(([A-Z_]+)\)`).ReplaceAllStringFunc(v, func(ref string) string {
		return expandMake(tb, vars, ref[2:len(ref)-1])
	})
}

// shellWords splits a command line as the shell would for these simple commands: words, quotes, no expansion.
func shellWords(tb testing.TB, s string) []string {
	tb.Helper()
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == ';' || r == '&' || r == '|':
			tb.Fatalf("command %q: keep go build alone in its RUN so its flags can be compared", s)
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		tb.Fatalf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// splitEnv separates leading NAME=value assignments from the command.
func splitEnv(words []string) (env, cmd []string) {
	for i, w := range words {
		if !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(w) {
			return words[:i], words[i:]
		}
	}
	return words, nil
}

type ignorePattern struct {
	pattern string
	negate  bool
}

func readDockerignore(tb testing.TB) []ignorePattern {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), ".dockerignore"))
	if err != nil {
		tb.Fatal(err)
	}
	var out []ignorePattern
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		p := ignorePattern{pattern: l}
		if rest, ok := strings.CutPrefix(l, "!"); ok {
			p = ignorePattern{pattern: rest, negate: true}
		}
		p.pattern = path.Clean(strings.TrimPrefix(p.pattern, "/"))
		out = append(out, p)
	}
	return out
}

// ignored applies .dockerignore's rules: the last pattern matching the path or one of its parent directories
// decides; "**" matches any number of directories.
func ignored(patterns []ignorePattern, file string) bool {
	out := false
	for _, p := range patterns {
		for dir := file; dir != "."; dir = path.Dir(dir) {
			if globMatch(p.pattern, dir) {
				out = !p.negate
				break
			}
		}
	}
	return out
}

func globMatch(pattern, name string) bool {
	if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
		parts := strings.Split(name, "/")
		for i := range parts {
			if globMatch(rest, strings.Join(parts[i:], "/")) {
				return true
			}
		}
		return false
	}
	ok, _ := path.Match(pattern, name)
	return ok
}
