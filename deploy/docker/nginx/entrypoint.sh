#!/bin/sh
# Render /etc/nginx/templates/*.template into /etc/nginx/conf.d/*.conf with the
# environment's variables only (as the official nginx image does), then run nginx.
set -eu
vars=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
for template in /etc/nginx/templates/*.template; do
    [ -e "$template" ] || continue
    out="/etc/nginx/conf.d/$(basename "$template" .template)"
    case "$out" in *.conf) ;; *) out="$out.conf" ;; esac
    envsubst "$vars" < "$template" > "$out"
done
nginx -t -q
exec "$@"
