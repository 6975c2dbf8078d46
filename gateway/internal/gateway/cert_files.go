package gateway

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// CertFiles is a certificate and its key read from PEM files, re-read by Reload (the gateway calls it on
// SIGHUP, as the server re-reads its keys file) so that a rotated certificate is used for new
// connections without a restart. A failed re-read keeps the certificate in use.
type CertFiles struct {
	cert, key string
	cur       atomic.Pointer[tls.Certificate]
}

// LoadCertFiles reads the pair once; an error means neither file gave a usable certificate.
func LoadCertFiles(cert, key string) (*CertFiles, error) {
	c := &CertFiles{cert: cert, key: key}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload re-reads the files.
func (c *CertFiles) Reload() error {
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return fmt.Errorf("loading %s and %s: %w", c.cert, c.key, err)
	}
	c.cur.Store(&pair)
	return nil
}

func (c *CertFiles) serverCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

func (c *CertFiles) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}
