package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
)

// rawClient is a minimal HTTP/1.1 keep-alive client on one connection. The
// load generator shares the machine with the server it measures; net/http's
// client spends as much CPU per request as the server's own HTTP layer, so a
// lean client keeps the measurement about the server.
type rawClient struct {
	addr string
	host string
	auth string
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

func newRawClient(addr, token string) *rawClient {
	return &rawClient{addr: addr, host: addr, auth: "Bearer " + token}
}

// do sends one request and returns the status and one header's value.
func (c *rawClient) do(method, path, contentType string, body []byte, wantHeader string) (int, string, error) {
	if c.conn == nil {
		conn, err := net.Dial("tcp", c.addr)
		if err != nil {
			return 0, "", err
		}
		c.conn, c.r, c.w = conn, bufio.NewReaderSize(conn, 16<<10), bufio.NewWriterSize(conn, 8<<10)
	}
	w := c.w
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(path)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(c.host)
	w.WriteString("\r\nAuthorization: ")
	w.WriteString(c.auth)
	w.WriteString("\r\nContent-Type: ")
	w.WriteString(contentType)
	w.WriteString("\r\nContent-Length: ")
	w.WriteString(strconv.Itoa(len(body)))
	w.WriteString("\r\n\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		c.close()
		return 0, "", err
	}
	status, value, err := c.readResponse(wantHeader)
	if err != nil {
		c.close()
	}
	return status, value, err
}

func (c *rawClient) readResponse(wantHeader string) (int, string, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, "", err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, "", fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, "", err
	}
	length, value, chunked := -1, "", false
	want := []byte(http.CanonicalHeaderKey(wantHeader) + ":")
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, "", err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		if n, ok := bytes.CutPrefix(line, []byte("Content-Length:")); ok {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(n)))
		}
		if bytes.Equal(line, []byte("Transfer-Encoding: chunked")) {
			chunked = true
		}
		if wantHeader != "" {
			if v, ok := bytes.CutPrefix(line, want); ok {
				value = string(bytes.TrimSpace(v))
			}
		}
	}
	if chunked {
		return status, value, c.discardChunks()
	}
	if length < 0 {
		return 0, "", fmt.Errorf("response without Content-Length")
	}
	if _, err := c.r.Discard(length); err != nil {
		return 0, "", err
	}
	return status, value, nil
}

func (c *rawClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *rawClient) discardChunks() error {
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.SplitN(line, []byte(";"), 2)[0])), 16, 64)
		if err != nil {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if _, err := c.r.Discard(int(size) + 2); err != nil {
			return err
		}
		if size == 0 {
			return nil
		}
	}
}
