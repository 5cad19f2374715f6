package server

import (
	"net/http"
	"strings"
)

// syncRuleView is one row of the Sync page: the rule as configured and
// what its last run did. Credentials appear only as where they come from.
type syncRuleView struct {
	RuleStatus
	Repositories string
	Tags         string
	Platforms    string
	Destination  string
	Referrers    bool
}

type syncPullThroughView struct {
	Prefix, Upstream string
}

type syncPageData struct {
	Configured  bool
	Rules       []syncRuleView
	PullThrough []syncPullThroughView
}

func (u *ui) syncPage(w http.ResponseWriter, r *http.Request, sess *uiSession) {
	v := u.sessionView(sess, "Sync", "sync")
	d := syncPageData{}
	if s := u.srv.sync; s != nil {
		d.Configured = true
		cfg := s.m.Config()
		for _, st := range s.Status() {
			rule := cfg.Rule(st.Rule)
			rv := syncRuleView{RuleStatus: st, Repositories: strings.Join(rule.Repositories, ", "),
				Platforms: strings.Join(rule.Platforms, ", "), Destination: rule.Destination, Referrers: rule.Referrers}
			if t := rule.Tags; t != nil {
				var parts []string
				if t.Semver != "" {
					parts = append(parts, "semver "+t.Semver)
				}
				if t.Regex != "" {
					parts = append(parts, "regex "+t.Regex)
				}
				rv.Tags = strings.Join(parts, " and ")
			}
			d.Rules = append(d.Rules, rv)
		}
		for _, p := range cfg.PullThrough {
			d.PullThrough = append(d.PullThrough, syncPullThroughView{Prefix: p.Prefix, Upstream: p.UpstreamOf().String()})
		}
	}
	v.Data = d
	u.render(w, http.StatusOK, "sync", v)
}
