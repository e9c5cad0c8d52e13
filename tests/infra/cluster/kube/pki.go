package main

// pki: the harness's certificates, service-account signing key and kubeconfigs.
//
//	kube pki --dir DIR --node-name NAME --node-ip IP --service-ip IP --server URL
//
// Writes into DIR (ECDSA P-256 keys, certificates valid for ten years):
//
//	ca.crt ca.key                           the cluster CA (kept across runs)
//	sa.key sa.pub                           service-account token signing key (kept across runs)
//	apiserver.crt/.key                      kube-apiserver serving (localhost, node IP, service IP, kubernetes.default...)
//	apiserver-kubelet-client.crt/.key       kube-apiserver -> kubelet (logs, exec)
//	kubelet.crt/.key                        kubelet serving (node name, node IP)
//	admin.kubeconfig, admin.crt/.key        system:masters, for tests and people
//	kube-controller-manager.kubeconfig, kube-scheduler.kubeconfig, kube-proxy.kubeconfig,
//	kubelet.kubeconfig (system:node:NAME)   one identity per component, as a real cluster has
//
// It is idempotent: when the parameters are those of the last run and every file exists, nothing
// is written; when they differ (say the node IP changed), the leaf certificates and kubeconfigs
// are made again with the same CA.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

type pkiParams struct {
	dir, nodeName, nodeIP, serviceIP, server string
}

func pkiMain(args []string) int {
	var p pkiParams
	fs := flag.NewFlagSet("pki", flag.ContinueOnError)
	fs.StringVar(&p.dir, "dir", "", "output directory")
	fs.StringVar(&p.nodeName, "node-name", "", "node name (kubelet identity)")
	fs.StringVar(&p.nodeIP, "node-ip", "", "node IP (API server advertise address)")
	fs.StringVar(&p.serviceIP, "service-ip", "", "first IP of the service range (the kubernetes Service)")
	fs.StringVar(&p.server, "server", "", "API server URL written into the kubeconfigs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if p.dir == "" || p.nodeName == "" || p.nodeIP == "" || p.serviceIP == "" || p.server == "" {
		fmt.Fprintln(os.Stderr, "pki: --dir, --node-name, --node-ip, --service-ip and --server are required")
		return 2
	}
	if err := p.run(); err != nil {
		fmt.Fprintln(os.Stderr, "pki:", err)
		return 1
	}
	return 0
}

var leafFiles = []string{
	"apiserver.crt", "apiserver.key", "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key",
	"kubelet.crt", "kubelet.key", "admin.crt", "admin.key", "admin.kubeconfig", "kube-controller-manager.kubeconfig",
	"kube-scheduler.kubeconfig", "kube-proxy.kubeconfig", "kubelet.kubeconfig",
}

func (p pkiParams) run() error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	stamp := fmt.Sprintf("node-name=%s\nnode-ip=%s\nservice-ip=%s\nserver=%s\n", p.nodeName, p.nodeIP, p.serviceIP, p.server)
	stampPath := filepath.Join(p.dir, "params")
	if old, err := os.ReadFile(stampPath); err == nil && string(old) == stamp && p.allExist() {
		return nil
	}
	caCert, caKey, err := p.loadOrCreateCA()
	if err != nil {
		return err
	}
	if err := p.ensureServiceAccountKey(); err != nil {
		return err
	}
	nodeIP := net.ParseIP(p.nodeIP)
	serviceIP := net.ParseIP(p.serviceIP)
	if nodeIP == nil || serviceIP == nil {
		return fmt.Errorf("bad IP: node %q, service %q", p.nodeIP, p.serviceIP)
	}
	serving := x509.ExtKeyUsageServerAuth
	client := x509.ExtKeyUsageClientAuth
	leaves := []struct {
		name  string
		cn    string
		org   []string
		usage x509.ExtKeyUsage
		dns   []string
		ips   []net.IP
	}{
		{"apiserver", "kube-apiserver", nil, serving,
			[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", p.nodeName},
			[]net.IP{net.IPv4(127, 0, 0, 1), nodeIP, serviceIP}},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, client, nil, nil},
		{"kubelet", p.nodeName, nil, serving, []string{p.nodeName, "localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), nodeIP}},
	}
	for _, l := range leaves {
		certPEM, keyPEM, err := signLeaf(caCert, caKey, l.cn, l.org, l.usage, l.dns, l.ips)
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(p.dir, l.name+".crt"), certPEM, 0o644); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(p.dir, l.name+".key"), keyPEM, 0o600); err != nil {
			return err
		}
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw})
	users := []struct{ file, cn, org string }{
		{"admin", "edgecast-admin", "system:masters"},
		{"kube-controller-manager", "system:kube-controller-manager", ""},
		{"kube-scheduler", "system:kube-scheduler", ""},
		{"kube-proxy", "system:kube-proxy", ""},
		{"kubelet", "system:node:" + p.nodeName, "system:nodes"},
	}
	for _, u := range users {
		var org []string
		if u.org != "" {
			org = []string{u.org}
		}
		certPEM, keyPEM, err := signLeaf(caCert, caKey, u.cn, org, client, nil, nil)
		if err != nil {
			return err
		}
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters["edgecast"] = &clientcmdapi.Cluster{Server: p.server, CertificateAuthorityData: caPEM}
		cfg.AuthInfos[u.file] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
		cfg.Contexts["edgecast"] = &clientcmdapi.Context{Cluster: "edgecast", AuthInfo: u.file, Namespace: "default"}
		cfg.CurrentContext = "edgecast"
		if u.file == "admin" {
			// Also as files, for curl and for clients that take a certificate and a key.
			if err := writeFile(filepath.Join(p.dir, "admin.crt"), certPEM, 0o644); err != nil {
				return err
			}
			if err := writeFile(filepath.Join(p.dir, "admin.key"), keyPEM, 0o600); err != nil {
				return err
			}
		}
		path := filepath.Join(p.dir, u.file+".kubeconfig")
		if err := clientcmd.WriteToFile(*cfg, path+".tmp"); err != nil {
			return err
		}
		if err := os.Chmod(path+".tmp", 0o600); err != nil {
			return err
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			return err
		}
	}
	return writeFile(stampPath, []byte(stamp), 0o644)
}

func (p pkiParams) allExist() bool {
	for _, f := range append([]string{"ca.crt", "ca.key", "sa.key", "sa.pub"}, leafFiles...) {
		if _, err := os.Stat(filepath.Join(p.dir, f)); err != nil {
			return false
		}
	}
	return true
}

func (p pkiParams) loadOrCreateCA() (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(p.dir, "ca.crt"), filepath.Join(p.dir, "ca.key")
	if certPEM, err := os.ReadFile(certPath); err == nil {
		keyPEM, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, nil, err
		}
		cert, err := parseCert(certPEM)
		if err != nil {
			return nil, nil, err
		}
		key, err := parseKey(keyPEM)
		if err != nil {
			return nil, nil, err
		}
		return cert, key, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "edgecast-cluster-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func (p pkiParams) ensureServiceAccountKey() error {
	keyPath, pubPath := filepath.Join(p.dir, "sa.key"), filepath.Join(p.dir, "sa.pub")
	if _, err := os.Stat(keyPath); err == nil {
		if _, err := os.Stat(pubPath); err == nil {
			return nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644)
}

func signLeaf(ca *x509.Certificate, caKey crypto.Signer, cn string, org []string, usage x509.ExtKeyUsage,
	dns []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: org},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("ca.crt: no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "EC PRIVATE KEY" {
		return nil, errors.New("ca.key: no PEM EC private key")
	}
	return x509.ParseECPrivateKey(block.Bytes)
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
