// Command notes is a small JSON API on third-party modules (chi, its CORS and rate-limit
// middleware, render): what most real Go services look like, with a go.mod that requires
// modules from the proxy. GET /healthz, GET /notes, POST /notes {"text": "…"}.
package main

import (
	"context"
	"errors"
	"log"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/cors"
	"github.com/go-chi/httprate"
	"github.com/go-chi/render"
)

type note struct {
	ID   int    `json:"id"`
	Text string `json:"text"`
}

type store struct {
	mu    sync.Mutex
	notes []note
}

func (s *store) add(text string) note {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := note{ID: len(s.notes) + 1, Text: text}
	s.notes = append(s.notes, n)
	return n
}

func (s *store) all() []note {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]note{}, s.notes...)
}

func newRouter(s *store) http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Use(cors.Handler(cors.Options{AllowedOrigins: []string{"*"}, AllowedMethods: []string{"GET", "POST"}}))
	r.Use(httprate.LimitByIP(1000, time.Minute))
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		render.JSON(w, r, map[string]string{"status": "ok", "arch": runtime.GOARCH})
	})
	r.Get("/notes", func(w http.ResponseWriter, r *http.Request) {
		render.JSON(w, r, s.all())
	})
	r.Post("/notes", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Text string `json:"text"`
		}
		if err := render.DecodeJSON(r.Body, &in); err != nil || in.Text == "" {
			render.Status(r, http.StatusBadRequest)
			render.JSON(w, r, map[string]string{"error": "send {\"text\": \"…\"}"})
			return
		}
		render.Status(r, http.StatusCreated)
		render.JSON(w, r, s.add(in.Text))
	})
	return r
}

func main() {
	addr := ":8080"
	if p := os.Getenv("PORT"); p != "" {
		addr = ":" + p
	}
	srv := &http.Server{Addr: addr, Handler: newRouter(&store{}), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	log.Printf("notes listening on %s", addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
