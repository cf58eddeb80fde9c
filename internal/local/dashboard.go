package local

import (
	"html/template"
	"net/http"
)

// The dashboard is one server-rendered page on the admin address: the
// instances with their readiness, the ingress URLs and every config
// problem, refreshed every few seconds. The JSON behind it is the admin
// API's, so what the page shows is what `weft status` prints.
var dashboardPage = template.Must(template.New("dashboard").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Weft mesh</title>
<meta http-equiv="refresh" content="5">
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.5rem}
table{border-collapse:collapse}td,th{padding:.3rem .8rem;border-bottom:1px solid #ddd;text-align:left}
.ok{color:#176f2c}.bad{color:#b00020}code{background:#f4f4f4;padding:0 .2rem}
</style></head><body>
<h1>Weft mesh <small>config version {{.Version}}</small></h1>
<p>{{range .Ingress}}Ingress: <a href="{{.}}">{{.}}</a> {{end}}</p>
<h2>Instances</h2>
<table id="instances"><tr><th>service</th><th>instance</th><th>version</th><th>address</th><th>sidecar</th><th>ready</th><th>restarts</th></tr>
{{range .Instances}}<tr><td>{{.Service}}</td><td>{{.Instance}}</td><td>{{.Version}}</td><td>{{.Address}}</td><td>{{.Sidecar}}</td>
<td class="{{if .Ready}}ok{{else}}bad{{end}}">{{if .Ready}}yes{{else}}no ({{.State}}){{end}}</td><td>{{.Restarts}}</td></tr>
{{end}}</table>
<h2>Config problems</h2>
{{if .Problems}}<ul id="problems">{{range .Problems}}<li class="bad"><code>{{.}}</code></li>{{end}}</ul>{{else}}<p class="ok">none</p>{{end}}
<h2>More</h2>
<ul><li><a href="/debug/syncz">proxy sync status</a></li><li><a href="/debug/registry">service registry</a></li>
<li><a href="/debug/config">config resources and status</a></li><li><a href="/metrics">control plane metrics</a></li></ul>
<p>Config folder: <code>{{.ConfigDir}}</code></p>
</body></html>
`))

func (m *mesh) handleDashboard(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = dashboardPage.Execute(w, m.status())
}
