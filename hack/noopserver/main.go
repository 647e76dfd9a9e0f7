// Command noopserver is the baseline of `make measure-load`: a net/http server that reads
// each request's body and answers a fixed JSON object, the least any callback server does.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on (loopback)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// The address on stdout tells the load driver where to send requests.
	fmt.Println(ln.Addr())
	answer := []byte(`{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}`)
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write(answer)
	}))
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
