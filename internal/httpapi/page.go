package httpapi

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed web
var web embed.FS

// pageHandler serves the web page and its assets from the binary: no CDN, works offline.
func pageHandler() http.Handler {
	sub, _ := fs.Sub(web, "web") // the embedded tree always has web/
	return http.FileServerFS(sub)
}
