#!/bin/sh
# The HAProxy binary Ray Serve runs, as hit_platform.serving.ingress sets it: edits the config Serve wrote
# (see ingress.haproxy_wrapper), then runs the real HAProxy with the same arguments. On one machine a
# user-only wrapper sets the environment and runs this; on a Ray cluster Serve's proxies on every node
# get the variables from the serving process's runtime env (ingress.ingress_env), nothing written on the
# nodes, and HIT_INGRESS_SECRET from their node's own environment (as `ray start` got it): never the runtime
# env, which Ray logs on every node (ingress.cluster_ingress_secret).
#   HIT_HAPROXY_REAL            the real HAProxy binary
#   HIT_INGRESS_SECRET          stamped beside each request id (x-hit-ingress), so a replica knows it is ours
#   HIT_HAPROXY_LOOPBACK_PORTS  "8404|9101": these ports' binds move onto 127.0.0.1, the unused syslog goes
cfg=""; prev=""
for a in "$@"; do
  if [ "$prev" = "-f" ]; then cfg="$a"; fi
  prev="$a"
done
if [ -n "$cfg" ] && [ -f "$cfg" ]; then
  if ! grep -q x-hit-request-id "$cfg"; then
    stamp=""
    # HAProxy reads "${HIT_INGRESS_SECRET}" from its own environment: the secret is written in no file
    if [ -n "$HIT_INGRESS_SECRET" ]; then stamp='    http-request set-header x-hit-ingress "${HIT_INGRESS_SECRET}"\n'; fi
    sed -i -E "/^frontend http_frontend/a\\    http-request set-header x-hit-request-id %[uuid]\\n${stamp}    http-request set-header x-request-disconnect-disabled ?1" "$cfg"
  fi
  if [ -n "$HIT_HAPROXY_LOOPBACK_PORTS" ]; then
    sed -i -E "s/^([[:space:]]*bind[[:space:]]+)(\*|0\.0\.0\.0|\[?::\]?)?:($HIT_HAPROXY_LOOPBACK_PORTS)([[:space:]]|\$)/\1127.0.0.1:\3\4/" "$cfg"
    # no syslog target listens (Serve's HAProxy metrics are off): drop the one UDP datagram per request
    sed -i -E '/^[[:space:]]*log[[:space:]]+[0-9]/d' "$cfg"
  fi
fi
exec "$HIT_HAPROXY_REAL" "$@"
