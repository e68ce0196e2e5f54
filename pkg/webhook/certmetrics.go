package webhook

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
)

// certExpiry exports when the serving certificate in the certificate directory expires, read at every scrape:
// controller-runtime's certwatcher counts reads and read errors but says nothing of expiry. It reads the file
// the server reloads from, so a renewal shows at the next scrape. An unreadable file exports nothing (and
// certwatcher_read_certificate_errors_total rises).
type certExpiry struct {
	path string
	desc *prometheus.Desc
}

func newCertExpiry(certDir string) *certExpiry {
	return &certExpiry{
		path: filepath.Join(certDir, "tls.crt"),
		desc: prometheus.NewDesc("leader_election_webhook_certificate_expiration_timestamp_seconds",
			"When the webhook's serving certificate (tls.crt in its certificate directory) expires (Unix time).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *certExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *certExpiry) Collect(ch chan<- prometheus.Metric) {
	b, err := os.ReadFile(c.path)
	if err != nil {
		return
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(cert.NotAfter.Unix()))
}
