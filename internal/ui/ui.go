// Package ui is spool's dashboard: static pages embedded in the binary
// and served at Prefix. It is a thin client of the public API (stats,
// tables, transactions, dead letters, events): the pages' JavaScript
// calls the same routes the CLI does, with the token the operator signs
// in with, sent as a Bearer header. The package serves files and nothing
// else; it holds no data and no credentials.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strings"
)

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

//go:embed assets
var assets embed.FS

// pages are the paths that answer the app shell (index.html), whose
// script draws the page the path names: each page has its own URL, so a
// reload or a bookmark opens it.
var pages = regexp.MustCompile(`^/ui/(|dead-letters|transactions/[^/]+|tables/[^/]+)$`)

// securityHeaders are sent with every answer: the pages run only their
// own scripts and styles, talk only to this origin, and are never framed.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
		"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options": "nosniff",
	"Referrer-Policy":        "no-referrer",
	"Cache-Control":          "no-cache",
}

// Handler serves the dashboard under Prefix: the files of assets/ under
// Prefix+"assets/", the app shell at every page's path, 404 elsewhere.
func Handler() http.Handler {
	files, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded directory is there: go:embed checked it
	}
	static := http.StripPrefix(Prefix+"assets/", http.FileServerFS(files))
	shell, err := fs.ReadFile(files, "index.html")
	if err != nil {
		panic(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range securityHeaders {
			w.Header().Set(k, v)
		}
		p := r.URL.Path
		switch {
		case strings.HasPrefix(p, Prefix+"assets/") && path.Ext(p) != "":
			static.ServeHTTP(w, r)
		case pages.MatchString(p):
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(shell) // the client may have gone
		default:
			http.NotFound(w, r)
		}
	})
}
