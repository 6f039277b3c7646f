package netaddr

import "strings"

// Redact returns list, one address or URL or several separated by commas, with the user
// info of each taken out: user:password@ becomes user:xxxxx@, and a lone user (which on NATS
// is a token) becomes redacted@. Everything else is kept as it was.
func Redact(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		parts[i] = redactOne(p)
	}
	return strings.Join(parts, ",")
}

func redactOne(s string) string {
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + 3
	}
	end := len(s)
	if i := strings.IndexAny(s[start:], "/?#"); i >= 0 {
		end = start + i
	}
	at := strings.LastIndex(s[start:end], "@")
	if at < 0 {
		return s
	}
	at += start
	if user, _, ok := strings.Cut(s[start:at], ":"); ok {
		return s[:start] + user + ":xxxxx" + s[at:]
	}
	return s[:start] + "redacted" + s[at:]
}

// RedactIn replaces every address of list that carries user info, wherever it appears in
// text, by its redacted form (for errors of libraries that quote the address they were given).
func RedactIn(text, list string) string {
	for _, p := range strings.Split(list, ",") {
		if r := redactOne(p); r != p && p != "" {
			text = strings.ReplaceAll(text, p, r)
		}
	}
	return text
}
