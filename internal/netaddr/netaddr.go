// Package netaddr holds the address checks shared by cascade's listeners and the redaction
// of credentials in addresses that reach a log or an error.
package netaddr

import "net"

// IsLoopback reports whether host names only this machine.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
