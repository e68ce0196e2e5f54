package webhook

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestCertificateExpiryIsReadFromTheFileAtEveryScrape(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCertExpiry(dir))

	if got := expiry(t, reg); got != nil {
		t.Fatalf("without tls.crt: %v, want no sample", *got)
	}
	for _, notAfter := range []time.Time{time.Unix(1900000000, 0), time.Unix(1950000000, 0)} {
		writeCert(t, filepath.Join(dir, "tls.crt"), notAfter)
		if got := expiry(t, reg); got == nil || *got != float64(notAfter.Unix()) {
			t.Fatalf("expiry %v, want %d (the renewed file must show at the next scrape)", got, notAfter.Unix())
		}
	}
}

func expiry(t *testing.T, reg *prometheus.Registry) *float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "leader_election_webhook_certificate_expiration_timestamp_seconds" {
			v := f.GetMetric()[0].GetGauge().GetValue()
			return &v
		}
	}
	return nil
}

func writeCert(t *testing.T, path string, notAfter time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
