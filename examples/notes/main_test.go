package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

func TestNotes(t *testing.T) {
	h := newRouter(&store{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	var health map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &health); err != nil || health["arch"] != runtime.GOARCH {
		t.Fatalf("healthz: %q (%v)", rec.Body.String(), err)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/notes", strings.NewReader(`{"text":"hi"}`)))
	if rec.Code != http.StatusCreated {
		t.Fatalf("POST /notes: %d %s", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/notes", strings.NewReader(`{}`)))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("POST /notes without text: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/notes", nil))
	var notes []note
	if err := json.Unmarshal(rec.Body.Bytes(), &notes); err != nil || len(notes) != 1 || notes[0].Text != "hi" {
		t.Fatalf("GET /notes: %q (%v)", rec.Body.String(), err)
	}
}
