package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigPrecedence(t *testing.T) {
	cases := []struct {
		name       string
		args       []string
		env        map[string]string
		wantPort   int
		wantTarget string
	}{
		{"defaults", nil, nil, 8989, defaultTargetURL},
		{"env port", nil, map[string]string{"PORT": "8084"}, 8084, defaultTargetURL},
		{"flag port", []string{"-port=8081"}, nil, 8081, defaultTargetURL},
		{"flag beats env", []string{"-port=8090"}, map[string]string{"PORT": "8084"}, 8090, defaultTargetURL},
		{"target flag", []string{"-proxy_target_url=http://google.com/"}, nil, 8989, "http://google.com/"},
		{"target env", nil, map[string]string{"PROXY_TARGET_URL": "https://example.org/x"}, 8989, "https://example.org/x"},
		{"target flag beats env", []string{"-proxy_target_url", "http://a/"}, map[string]string{"PROXY_TARGET_URL": "http://b/"}, 8989, "http://a/"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseConfig(c.args, env(c.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.port != c.wantPort || cfg.target.String() != c.wantTarget {
				t.Fatalf("got port %d target %s, want %d %s", cfg.port, cfg.target, c.wantPort, c.wantTarget)
			}
		})
	}
}

func TestConfigRejectsBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
	}{
		{nil, map[string]string{"PORT": "eighty"}},
		{[]string{"-port=0"}, nil},
		{[]string{"-proxy_target_url=not a url"}, nil},
		{[]string{"-proxy_target_url=ftp://x/"}, nil},
	} {
		if _, err := parseConfig(c.args, env(c.env), io.Discard); err == nil {
			t.Errorf("args %v env %v: want an error", c.args, c.env)
		}
	}
}

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestProbes(t *testing.T) {
	var ready atomic.Bool
	h := newHandler(mustURL(t, "http://127.0.0.1:1/"), &ready, "test")
	if rec := get(t, h, "/healthz"); rec.Code != http.StatusOK {
		t.Fatalf("healthz: %d", rec.Code)
	}
	rec := get(t, h, "/readyz")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "Ready NOK") {
		t.Fatalf("readyz before warm-up: %d %q", rec.Code, rec.Body.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	warmUpThenReady(ctx, &ready, 10*time.Millisecond)
	rec = get(t, h, "/readyz")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "Ready OK") {
		t.Fatalf("readyz after warm-up: %d %q", rec.Code, rec.Body.String())
	}
}

func TestProxiesToTargetWithHeader(t *testing.T) {
	var gotPath, gotHost string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotHost = r.URL.Path, r.Host
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "<h1>maintenance</h1>")
	}))
	defer upstream.Close()
	var ready atomic.Bool
	h := newHandler(mustURL(t, upstream.URL+"/maintenance/myapp/"), &ready, "proxy-1")
	rec := get(t, h, "/index.html")
	if rec.Code != http.StatusOK || rec.Body.String() != "<h1>maintenance</h1>" {
		t.Fatalf("proxied: %d %q", rec.Code, rec.Body.String())
	}
	if rec.Header().Get("X-Proxy") != "proxy-1" {
		t.Fatalf("X-Proxy header: %q", rec.Header().Get("X-Proxy"))
	}
	if gotPath != "/maintenance/myapp/index.html" {
		t.Fatalf("upstream path: %q", gotPath)
	}
	if gotHost != strings.TrimPrefix(upstream.URL, "http://") {
		t.Fatalf("upstream host: %q", gotHost)
	}
}

func TestUnreachableTargetIsBadGateway(t *testing.T) {
	var ready atomic.Bool
	h := newHandler(mustURL(t, "http://127.0.0.1:1/"), &ready, "p")
	rec := get(t, h, "/")
	if rec.Code != http.StatusBadGateway || rec.Header().Get("X-Proxy") != "p" {
		t.Fatalf("got %d %q", rec.Code, rec.Header().Get("X-Proxy"))
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
