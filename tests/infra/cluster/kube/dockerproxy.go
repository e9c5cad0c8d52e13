package main

// docker-proxy: a Docker Engine API proxy on a unix socket, placed between cri-dockerd and
// dockerd, that clamps negative OOM score adjustments to 0 in container-create requests.
//
//	kube docker-proxy --listen /path/docker.sock [--upstream /var/run/docker.sock]
//
// Why: cri-dockerd creates every pod sandbox (pause container) with OomScoreAdj -998, and the
// kubelet asks for -997 for Guaranteed pods. Lowering oom_score_adj below 0 needs
// CAP_SYS_RESOURCE; on hosts that do not grant it (such as the machines this harness is
// developed and tested on) runc fails every such container with "can't get final child's PID
// from pipe: EOF". A positive adjustment (BestEffort 1000, Burstable 2..999) is allowed and is
// passed through unchanged. Everything else, streams and hijacked attach/exec connections
// included, goes through as is.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"syscall"
)

var containerCreatePath = regexp.MustCompile(`^(/v[0-9.]+)?/containers/create$`)

func dockerProxyMain(args []string) int {
	fs := flag.NewFlagSet("docker-proxy", flag.ContinueOnError)
	listen := fs.String("listen", "", "unix socket to listen on")
	upstream := fs.String("upstream", "/var/run/docker.sock", "dockerd's unix socket")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *listen == "" {
		fmt.Fprintln(os.Stderr, "docker-proxy: --listen is required")
		return 2
	}
	logger := log.New(os.Stderr, "docker-proxy: ", log.LstdFlags)
	target, _ := url.Parse("http://docker")
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1 // logs, events and stats are streams: pass every write on at once
	proxy.Transport = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", *upstream)
		},
		MaxIdleConnsPerHost: 16,
	}
	proxy.ErrorLog = logger
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && containerCreatePath.MatchString(r.URL.Path) {
			if err := clampOOMScoreAdj(r, logger); err != nil {
				http.Error(w, `{"message":"docker-proxy: `+err.Error()+`"}`, http.StatusBadRequest)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	})
	_ = os.Remove(*listen)
	ln, err := net.Listen("unix", *listen)
	if err != nil {
		logger.Print(err)
		return 1
	}
	if err := os.Chmod(*listen, 0o660); err != nil {
		logger.Print(err)
		return 1
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		_ = ln.Close()
	}()
	logger.Printf("listening on %s, forwarding to %s", *listen, *upstream)
	err = http.Serve(ln, handler)
	_ = os.Remove(*listen)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		logger.Print(err)
		return 1
	}
	return 0
}

func clampOOMScoreAdj(r *http.Request, logger *log.Logger) error {
	body, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		return err
	}
	out := body
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err == nil {
		if raw, ok := doc["HostConfig"]; ok {
			var hostConfig map[string]json.RawMessage
			if err := json.Unmarshal(raw, &hostConfig); err == nil {
				if v, ok := hostConfig["OomScoreAdj"]; ok {
					if adj, err := strconv.Atoi(string(bytes.TrimSpace(v))); err == nil && adj < 0 {
						hostConfig["OomScoreAdj"] = json.RawMessage("0")
						if doc["HostConfig"], err = json.Marshal(hostConfig); err != nil {
							return err
						}
						if out, err = json.Marshal(doc); err != nil {
							return err
						}
						logger.Printf("container %q: OomScoreAdj %d -> 0 (no CAP_SYS_RESOURCE)", r.URL.Query().Get("name"), adj)
					}
				}
			}
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(out))
	r.ContentLength = int64(len(out))
	r.Header.Set("Content-Length", strconv.Itoa(len(out)))
	return nil
}
