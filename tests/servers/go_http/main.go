// An unmodified-style Go server for steward's tests: net/http on the socket that
// systemd-style socket activation hands over (fd 3, through net.FileListener), after a
// start-up that takes BOOT_MS (default 2000). It never sends READY=1. On SIGTERM it
// stops accepting, finishes what is in flight (http.Server.Shutdown) and exits.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	boot, err := strconv.Atoi(os.Getenv("BOOT_MS"))
	if err != nil {
		boot = 2000
	}
	time.Sleep(time.Duration(boot) * time.Millisecond)

	listener, err := net.FileListener(os.NewFile(3, "listen0"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "go_http: fd 3:", err)
		os.Exit(1)
	}
	generation := os.Getenv("STEWARD_GENERATION")
	bootNs := strconv.FormatInt(time.Now().UnixNano(), 10) // X-Boot, for bench/'s client
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.Header().Set("X-Boot", bootNs)
		fmt.Fprintf(w, "hello from go generation %s pid %d\n", generation, os.Getpid())
	})}
	stopped := make(chan struct{})
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM)
		<-stop
		server.Shutdown(context.Background())
		close(stopped)
	}()
	if err := server.Serve(listener); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "go_http:", err)
		os.Exit(1)
	}
	<-stopped
}
