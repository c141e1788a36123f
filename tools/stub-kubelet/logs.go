package main

import (
	"fmt"
	"net/http"
	"time"
)

// fixedLogLines is what every container "logged" before the request.
const fixedLogLines = 3

// followInterval is how often a followed log gets one more line.
const followInterval = 200 * time.Millisecond

// serveLogs writes the fixed log of a container and, with follow=true, one more line every
// followInterval until the client (the API server) goes away.
func serveLogs(w http.ResponseWriter, r *http.Request) {
	key := containerKey(r)
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	line := 0
	write := func() bool {
		line++
		_, err := fmt.Fprintf(w, "stub-kubelet log line %d of %s\n", line, key)
		if flusher != nil {
			flusher.Flush()
		}
		return err == nil
	}
	for line < fixedLogLines {
		if !write() {
			return
		}
	}
	if r.URL.Query().Get("follow") != "true" {
		return
	}
	ticker := time.NewTicker(followInterval)
	defer ticker.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ticker.C:
			if !write() {
				return
			}
		}
	}
}
