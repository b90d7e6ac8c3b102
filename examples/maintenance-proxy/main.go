// Command maintenance-proxy is a small reverse proxy to a static maintenance page
// (for example an S3 website behind a CDN). It is the workload of polyarch's seed 000.
//
// Configuration, highest precedence first: the -port and -proxy_target_url flags,
// the PORT and PROXY_TARGET_URL environment variables, then the defaults below.
package main

import (
	"context"
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
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	defaultPort      = 8989
	defaultTargetURL = "http://my-cdn.s3-website.my-region.amazonaws.com/maintenance/myapp/"
	// warmUp simulates the time the service needs before it can take traffic.
	warmUp = time.Second
)

type config struct {
	port   int
	target *url.URL
}

// parseConfig reads flags from args, falling back to the environment, then to defaults.
func parseConfig(args []string, getenv func(string) string, errOut io.Writer) (config, error) {
	port := defaultPort
	if v := getenv("PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return config{}, fmt.Errorf("PORT=%q is not a port number (1-65535)", v)
		}
		port = p
	}
	target := defaultTargetURL
	if v := getenv("PROXY_TARGET_URL"); v != "" {
		target = v
	}

	fs := flag.NewFlagSet("maintenance-proxy", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.IntVar(&port, "port", port, "TCP port to listen on (env PORT)")
	fs.StringVar(&target, "proxy_target_url", target, "URL every request is forwarded to (env PROXY_TARGET_URL)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if port < 1 || port > 65535 {
		return config{}, fmt.Errorf("-port=%d is not a port number (1-65535)", port)
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return config{}, fmt.Errorf("proxy target %q must be an absolute http(s) URL", target)
	}
	return config{port: port, target: u}, nil
}

// newHandler serves the probes and proxies everything else to the target.
func newHandler(target *url.URL, ready *atomic.Bool, proxyName string) http.Handler {
	proxy := httputil.NewSingleHostReverseProxy(target)
	direct := proxy.Director
	proxy.Director = func(r *http.Request) {
		direct(r)
		// Virtual-hosted targets (S3 websites, CDNs) route on the Host header.
		r.Host = target.Host
	}
	proxy.ModifyResponse = func(resp *http.Response) error {
		resp.Header.Set("X-Proxy", proxyName)
		return nil
	}
	proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		log.Printf("proxy error for %s: %v", r.URL.Path, err)
		w.Header().Set("X-Proxy", proxyName)
		w.WriteHeader(http.StatusBadGateway)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "OK\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "Ready NOK\n")
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "Ready OK\n")
	})
	mux.Handle("/", proxy)
	return mux
}

// warmUpThenReady marks the service ready after the simulated load time.
func warmUpThenReady(ctx context.Context, ready *atomic.Bool, d time.Duration) {
	log.Print("Ready NOK")
	select {
	case <-time.After(d):
		ready.Store(true)
		log.Print("Ready OK")
	case <-ctx.Done():
	}
}

func run(ctx context.Context, args []string) error {
	cfg, err := parseConfig(args, os.Getenv, os.Stderr)
	if err != nil {
		return err
	}
	name, err := os.Hostname()
	if err != nil || name == "" {
		name = "localhost"
	}
	var ready atomic.Bool
	srv := &http.Server{
		Handler:           newHandler(cfg.target, &ready, name),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", cfg.port))
	if err != nil {
		return err
	}
	log.Printf("forwarding to -> %s://%s", cfg.target.Scheme, cfg.target.Host)
	log.Printf("Starting the service listening on port :%d ...", cfg.port)
	go warmUpThenReady(ctx, &ready, warmUp)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Print("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil && !errors.Is(err, http.ErrServerClosed) {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		log.Printf("error: %v", err)
		os.Exit(1)
	}
}
