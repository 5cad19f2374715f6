package trust

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"
)

// Debian's Java keystore, kept in step with /etc/ssl/certs by the
// ca-certificates-java hook, and where its password is configured.
const (
	javaKeystore = "/etc/ssl/certs/java/cacerts"
	javaDefaults = "/etc/default/cacerts"
)

// cleanJava removes the anchor's entry from Debian's Java keystore. The
// hook adds "debian:<anchor>.pem" when the anchor is installed, but
// `update-ca-certificates --fresh` does not take it out again (seen with
// ca-certificates-java 20230710 on Debian 12: its fresh rebuild keeps
// aliases whose PEM is gone), so a removed CA would stay trusted by Java.
// Only for a Debian store whose root has a keystore; a missing keytool
// means there is no Java to clean up after.
func (s *anchorStore) cleanJava(ctx context.Context, name string) (bool, error) {
	if s.layout.kind != Debian {
		return false, nil
	}
	if _, ok, err := readIfExists(rooted(s.root, javaKeystore)); err != nil || !ok {
		return false, err
	}
	pass := "changeit"
	if b, ok, _ := readIfExists(rooted(s.root, javaDefaults)); ok {
		if p := parseStorepass(b); p != "" {
			pass = p
		}
	}
	alias := "debian:" + anchorBase(name) + ".pem"
	ks := rooted(s.root, javaKeystore)
	// keytool -list exits non-zero when the alias is absent (or there is no
	// keytool): nothing to remove then.
	if _, err := run(ctx, s.run, []string{"keytool", "-list", "-keystore", ks, "-storepass", pass, "-alias", alias}); err != nil {
		return false, nil
	}
	s.log.Debug("removing the CA from the Java keystore", "alias", alias)
	if _, err := run(ctx, s.run, []string{"keytool", "-delete", "-noprompt", "-keystore", ks, "-storepass", pass, "-alias", alias}); err != nil {
		return false, fmt.Errorf("removing %s from the Java keystore %s: %w", alias, javaKeystore, err)
	}
	return true, nil
}

// parseStorepass reads storepass=... from /etc/default/cacerts.
func parseStorepass(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(l, "storepass="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return ""
}
